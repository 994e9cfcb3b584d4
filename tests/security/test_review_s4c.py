"""Review s4c: attacks on the e2b backend, through the local E2B test double (never E2B).

Each test performs an attack that succeeded and asserts the promise it broke; each was a
strict xfail until its fix.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

if importlib.util.find_spec("e2b_code_interpreter") is None:
    pytest.skip("e2b-code-interpreter is not installed", allow_module_level=True)

from e2b_code_interpreter import Sandbox
from e2b_double import E2BDouble
from e2b_double import server as double_server
from e2b_double.env import shared_double

from rlmbox.errors import IsolationUnavailable, PolicyError, SandboxError
from rlmbox.lm.scripted import ScriptedLM
from rlmbox.runtime.runtime import Runtime
from rlmbox.sandboxes.base import SandboxSpec
from rlmbox.sandboxes.e2b.backend import E2BBackend, load_sdk
from rlmbox.sandboxes.e2b.calls import Backoff
from rlmbox.sandboxes.e2b.options import E2BOptions
from rlmbox.sandboxes.e2b.orphans import collect_orphans, kill_by_tag
from rlmbox.sandboxes.owner import LABEL_SESSION, Owner, host_id


@pytest.fixture
def double() -> Iterator[E2BDouble]:
    """The shared double, its fault knobs reset; every VM left over is killed."""
    found = shared_double()
    found.faults.statuses.clear()
    found.faults.lost_creates = 0
    yield found
    for sandbox_id in sorted(found.sandboxes):
        found.kill(sandbox_id)


def _policy(tmp_path: Path, *, require: list[str], **e2b: Any) -> Path:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({
        "version": 1, "name": "review-s4c", "mode": "enforce",
        "limits": {"memory_mb": 256, "cell_timeout_s": 3, "interrupt_grace_s": 1,
                   "output_bytes": 65536, "cpu_seconds": 60},
        "isolation": {"backend": "e2b", "require": require,
                      "e2b": {"template": "rlmbox", "timeout_s": 600, "cpu": 1,
                              "memory_mb": 256, **e2b}},
        "rules": []}))
    return path


def _vm(double: E2BDouble, owner: Owner, name: str) -> str:
    sandbox = Sandbox.create(template="rlmbox", metadata=owner.labels(name), timeout=60,
                             api_key=double.api_key, api_url=double.url,
                             sandbox_url=double.url)
    return str(sandbox.sandbox_id)


def test_require_network_none_refuses_an_e2b_policy_with_internet_on(
        double: E2BDouble, tmp_path: Path) -> None:
    """Fail closed: a policy that requires network_none but turns E2B's internet on must
    be refused, never given a VM with internet access."""
    made: list[Runtime] = []

    def open_a_session() -> None:
        made.append(Runtime(_policy(tmp_path, require=["network_none"], internet=True),
                            lm=ScriptedLM(default="x"), audit_dir=tmp_path / "audit",
                            pool_size=0))
        made[0].session().close()

    # refused when the policy loads (PolicyError) or when the session starts
    # (IsolationUnavailable): either keeps the promise
    try:
        with pytest.raises((PolicyError, IsolationUnavailable)):
            open_a_session()
    finally:
        for rt in made:
            rt.close()
    assert not any(record.internet for record in double.sandboxes.values())


def test_gc_spares_a_live_vm_of_another_host_that_shares_the_hostname(
        double: E2BDouble) -> None:
    """Two machines on one E2B team may share a hostname (cloud images, containers);
    'VMs of other hosts on the same E2B team are never judged from here'."""
    other_machine = Owner(f"{socket.gethostname()}/{'f' * 8}-another-machines-boot-id",
                          pid=1, start="1")
    assert other_machine.host != host_id()
    foreign = _vm(double, other_machine, "rlmbox-other-machine")
    killed = collect_orphans(load_sdk(), E2BBackend().params())
    assert foreign not in killed
    assert foreign in double.sandboxes


def test_a_lost_create_cleanup_kills_only_its_own_tag(
        double: E2BDouble, monkeypatch: pytest.MonkeyPatch) -> None:
    """An E2B that answers a list without applying the metadata filter (an older
    self-hosted API, a proxy dropping the query) must not turn the cleanup of one lost
    create into killing every sandbox of the team."""
    bystander = _vm(double, Owner("elsewhere/boot", 1, "1"), "rlmbox-bystander")
    monkeypatch.setattr(E2BDouble, "listed",
                        lambda self, metadata: [self.detail_json(r)
                                                for r in list(self.sandboxes.values())])
    kill_by_tag(load_sdk(), E2BBackend().params(), LABEL_SESSION, "rlmbox-lost-create")
    assert bystander in double.sandboxes


def test_an_envd_start_that_never_answers_does_not_hang_create(
        double: E2BDouble, monkeypatch: pytest.MonkeyPatch) -> None:
    """'never a hang': the ready timeout must bound the whole start of the agent."""
    release = threading.Event()
    original = double_server._Handler._process_stream

    def stalled(self: Any, vm: Any, name: str, request: dict[str, Any]) -> None:
        if name != "Start":
            original(self, vm, name, request)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/connect+json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        release.wait(120)
        self.close_connection = True
        self.connection.close()

    monkeypatch.setattr(double_server._Handler, "_process_stream", stalled)
    backend = E2BBackend(ready_timeout=2, backoff=Backoff(attempts=1))
    spec = SandboxSpec(e2b=E2BOptions(template="rlmbox", timeout_s=120, cpu=1, memory_mb=256))
    outcome: list[object] = []

    def create() -> None:
        try:
            outcome.append(backend.create(spec))
        except SandboxError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=create, daemon=True)
    thread.start()
    thread.join(15)
    returned = bool(outcome)
    release.set()
    thread.join(30)
    for made in outcome:
        if not isinstance(made, BaseException):
            made.kill()   # type: ignore[attr-defined]
    assert returned, "create did not return within 15 s (ready_timeout 2 s)"
