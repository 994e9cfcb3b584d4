"""Review s5d: attacks on the node actor's sandbox reaper and on driver-run calls.

Each test performs one attack and asserts the promise it breaks today (strict xfail: it
turns into a failure the moment the promise holds; then remove the mark).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rlmbox.cluster.cell_wire import CallEvent
from rlmbox.cluster.driver_calls import DriverCalls
from rlmbox.cluster.lm_wire import request_data
from rlmbox.lm.base import Completion, LMRequest, Turn
from rlmbox.sandboxes.owner import LABEL_OWNER
from tests.conftest import write_policy
from tests.security.harness import require_backend

Make = Callable[..., Any]


class NonFiniteCostLM:
    """A provider whose completion reports a cost no ledger can take (the embedded runtime
    refuses it at once: "usage must be non-negative numbers")."""

    name = "non-finite-cost"
    model = "m"

    def complete(self, prompt: str, *, model: str | None = None) -> Completion:
        return Completion("hi", "m", 1, 1, cost_usd=float("nan"))


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    import docker

    client = docker.from_env(timeout=30)
    yield client
    client.close()


# a node actor's clean shutdown, then what ray.kill does right after it returns (the
# worker exits without running atexit); NodeHost is the actor's class, run as a process
SHUTDOWN_THEN_KILLED = """
import os, sys
from rlmbox.cluster.node import NodeHost
from rlmbox.sandboxes.owner import Owner
host = NodeHost("n1", sys.argv[1], sys.argv[2], None, None, 0, None, "session", False)
print(Owner.current().id, flush=True)
for _ in range(4):
    host.open(None, {}, None)
host.shutdown()
os._exit(0)
"""


def test_a_node_actors_clean_shutdown_then_kill_leaves_no_container(
        engine: Any, tmp_path: Path) -> None:
    """``NodeHost.shutdown`` closes its sessions (host-side kill, the engine's removal
    queued on a background thread), tells its reaper the sandboxes are closed, and
    returns; ``RayRuntime.close`` then ``ray.kill``s the actor, which takes the queued
    removals with it, and the reaper, told CLOSED, asks no one. The promise
    (docs/scale-out.md, Failures): no container survives its node actor."""
    require_backend("docker-runc")
    policy = write_policy(tmp_path, isolation={"backend": "docker", "runtime": "runc",
                                               "require": []}, limits={"pids": 256})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", SHUTDOWN_THEN_KILLED, str(policy),
                           str(tmp_path / "audit")], capture_output=True, text=True,
                          timeout=120, env=env, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    owner = done.stdout.split()[0]
    label = {"label": f"{LABEL_OWNER}={owner}"}
    try:
        time.sleep(3.0)   # a reaper (had it reaped) is done within its second look
        left = [(c["Names"], c["State"]) for c in engine.api.containers(all=True,
                                                                         filters=label)]
        assert not left, f"containers outlived their node actor: {left}"
    finally:
        for container in engine.api.containers(all=True, filters=label):
            with contextlib.suppress(Exception):
                engine.api.remove_container(container["Id"], force=True, v=True)
        for volume in engine.api.volumes(filters=label).get("Volumes") or []:
            with contextlib.suppress(Exception):
                engine.api.remove_volume(volume["Name"], force=True)


def test_a_driver_lm_completion_that_is_not_json_still_answers_the_node() -> None:
    """``DriverCalls.run`` "never raises for the function's own failure": a completion
    with a NaN cost is the provider's failure, and the node must get an answer (else
    its call waits, slot held and usage uncharged, until the session closes)."""
    calls = DriverCalls({}, NonFiniteCostLM(), None)
    request = request_data(LMRequest((Turn("user", "q"),)))
    answer = calls.run(CallEvent(1, "lm", "respond", {"request": request, "model": None}))
    assert not answer.ok


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_driver_lm_completion_with_a_nan_cost_fails_the_call_at_once(
        make_ray_runtime: Make, tmp_path: Path) -> None:
    policy = write_policy(tmp_path, isolation={"backend": "process"},
                          limits={"tool_timeout_s": 3.0, "cell_timeout_s": 6.0})
    rt = make_ray_runtime(policy, lm=NonFiniteCostLM())
    with rt.session() as s:
        started = time.monotonic()
        result = s.exec("try:\n    llm_query('q')\nexcept Exception as e:\n"
                        "    print(type(e).__name__)\n")
        took = time.monotonic() - started
    # embedded: "ValueError: usage must be non-negative numbers" within milliseconds
    assert took < 2.5, (took, result)
    assert result.status == "ok", result
    assert result.stdout.strip(), result


class _Response:
    status_code = 500


class FlakyEngine:
    """An engine listing two containers of one owner, whose first removal fails with a
    500 (say, "driver failed to remove root filesystem: device or resource busy")."""

    def __init__(self, owner: str) -> None:
        self.api = self
        self.removal_attempts: list[str] = []
        self._owner = owner

    def containers(self, all: bool, filters: dict[str, str]) -> list[dict[str, Any]]:
        labels = {LABEL_OWNER: self._owner}
        return [{"Id": name * 12, "Names": [f"/{name}"], "Labels": labels}
                for name in ("a", "b")]

    def remove_container(self, container: str, force: bool, v: bool) -> None:
        import docker.errors

        self.removal_attempts.append(container)
        if container.startswith("a"):
            raise docker.errors.APIError("device or resource busy", response=_Response())

    def volumes(self, filters: dict[str, str]) -> dict[str, Any]:
        return {"Volumes": []}

    def close(self) -> None:
        pass


def test_one_failed_removal_does_not_stop_the_reaper(monkeypatch: pytest.MonkeyPatch) -> None:
    """``sandbox_reaper.reap`` goes through the owner's containers one by one; an engine
    error on one (anything but 404/409) is raised out of ``remove_owned`` and out of the
    reaper, so every container after it, the E2B sandboxes and the second look are
    never reached, and the reaper is gone. The promise: every sandbox of the dead actor
    is killed (docs/scale-out.md, Failures)."""
    from rlmbox.cluster import sandbox_reaper
    from rlmbox.sandboxes.docker import engine as docker_engine

    fake = FlakyEngine("h/m/b:1:2")
    monkeypatch.setattr(docker_engine, "connect", lambda timeout: fake)
    monkeypatch.setattr(sandbox_reaper, "SECOND_LOOK_S", 0.0)
    monkeypatch.delenv("E2B_API_KEY", raising=False)
    with contextlib.suppress(Exception):
        sandbox_reaper.reap("h/m/b:1:2")
    assert "b" * 12 in fake.removal_attempts, fake.removal_attempts
