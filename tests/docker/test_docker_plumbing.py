"""Start, frames, interrupt and kill over the container's attached stdio."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from docker_helpers import answer, run

from rlmbox.errors import SandboxCrashed, SandboxUnavailable
from rlmbox.sandboxes.base import Backend, Sandbox, SandboxSpec
from rlmbox.sandboxes.docker.backend import DockerBackend, DockerSandbox
from rlmbox.sandboxes.docker.host_kill import REMOVALS
from rlmbox.sandboxes.owner import LABEL_OWNER, LABEL_SESSION, Owner

pytestmark = pytest.mark.docker


def test_backend_and_sandbox_fit_the_protocols(backend: DockerBackend,
                                               sandbox: DockerSandbox) -> None:
    """The Docker backend is a drop-in Backend and its sandboxes are Sandboxes."""
    assert isinstance(sandbox, Sandbox)
    _typed: Backend = backend
    assert sandbox.info.backend == "docker"
    assert sandbox.info.runtime == backend.runtime


def test_state_persists_across_cells(sandbox: DockerSandbox) -> None:
    answer(sandbox, "x = 41")
    assert answer(sandbox, "answer = x + 1") == 42


def test_large_frames_cross_intact(sandbox: DockerSandbox) -> None:
    """A 4 MiB answer arrives whole, although the engine chunks it."""
    text = answer(sandbox, "answer = 'ab' * (2 * 1024 * 1024)")
    assert text == "ab" * (2 * 1024 * 1024)


def test_model_code_printing_does_not_corrupt_the_stream(sandbox: DockerSandbox) -> None:
    assert answer(sandbox, "print('noise'); import os; os.write(2, b'err'); answer = 1") == 1


def test_labels_name_owner_and_session(sandbox: DockerSandbox, engine: Any) -> None:
    labels = engine.api.inspect_container(sandbox.container_id)["Config"]["Labels"]
    assert labels[LABEL_OWNER] == Owner.current().id
    assert labels[LABEL_SESSION] == sandbox.info.sandbox_id
    assert labels["org.rlmbox.created-at"].endswith("+00:00")


def test_interrupt_stops_a_running_cell(sandbox: DockerSandbox) -> None:
    """SIGINT reaches the agent as KeyboardInterrupt; the namespace survives."""
    answer(sandbox, "kept = 'yes'")
    sandbox.send({"t": "exec", "id": "spin", "code": "while True: pass"})
    timer = threading.Timer(1.0, sandbox.interrupt)
    timer.start()
    frame = sandbox.recv(60)
    timer.join()
    assert frame is not None
    assert frame["status"] == "interrupted"
    assert answer(sandbox, "answer = kept") == "yes"


def test_kill_removes_the_container_and_is_idempotent(sandbox: DockerSandbox,
                                                      engine: Any) -> None:
    sandbox.kill()
    sandbox.kill()
    assert REMOVALS.wait(60)   # the engine's removal runs off the caller's path
    assert engine.api.containers(all=True, filters={"id": sandbox.container_id}) == []
    assert sandbox.death_reason() == "killed by the host"


def test_agent_exit_is_reported_with_its_code(sandbox: DockerSandbox) -> None:
    sandbox.send({"t": "exec", "id": "bye", "code": "import os; os._exit(7)"})
    with pytest.raises(SandboxCrashed, match="exit 7"):
        sandbox.recv(60)
    assert sandbox.death_reason() == "exit 7"


def _backend_with_agent(backend: DockerBackend, tmp_path: Path, source: str,
                        timeout: float = 60.0) -> DockerBackend:
    bundle = tmp_path / "bad-agent"
    bundle.mkdir()
    (bundle / "agent.py").write_text(source)
    os.chmod(bundle, 0o755)
    os.chmod(bundle / "agent.py", 0o644)
    return DockerBackend(backend.runtime, image=backend.image(), agent_dir=bundle,
                         client=backend.client, stage_root=tmp_path / "stage",
                         ready_timeout=timeout, transport="stdio")


def _mine(engine: Any) -> list[dict[str, Any]]:
    """This process's containers, once the removals earlier tests queued have run (a count
    taken while one was still being removed made the next test's "none left" fail)."""
    assert REMOVALS.wait(60), "the queued container removals did not finish in 60 s"
    found: list[dict[str, Any]] = engine.api.containers(
        all=True, filters={"label": f"{LABEL_OWNER}={Owner.current().id}"})
    return found


def test_agent_that_dies_before_ready_leaves_no_container(
        backend: DockerBackend, engine: Any, tmp_path: Path) -> None:
    broken = _backend_with_agent(backend, tmp_path, "import sys\nsys.stderr.write('boom')\n"
                                 "raise SystemExit(3)\n")
    before = len(_mine(engine))
    with pytest.raises(SandboxCrashed, match=r"exit 3.*boom"):
        broken.create(SandboxSpec())
    assert len(_mine(engine)) == before


def test_agent_that_never_gets_ready_times_out_and_is_removed(
        backend: DockerBackend, engine: Any, tmp_path: Path) -> None:
    silent = _backend_with_agent(backend, tmp_path, "import time\ntime.sleep(600)\n",
                                 timeout=3.0)
    before = len(_mine(engine))
    with pytest.raises(SandboxUnavailable, match="not ready within 3 s"):
        silent.create(SandboxSpec())
    assert len(_mine(engine)) == before


def test_forged_first_frame_is_refused(backend: DockerBackend, engine: Any,
                                       tmp_path: Path) -> None:
    """An agent whose first frame is not `ready` never becomes a sandbox."""
    forger = _backend_with_agent(backend, tmp_path, (
        "import json, struct, sys, time\n"
        "b = json.dumps({'t': 'result', 'id': 'x', 'status': 'ok'}).encode()\n"
        "sys.stdout.buffer.write(struct.pack('>I', len(b)) + b); sys.stdout.flush()\n"
        "time.sleep(60)\n"))
    before = len(_mine(engine))
    with pytest.raises(SandboxCrashed, match="not ready"):
        forger.create(SandboxSpec())
    assert len(_mine(engine)) == before


def test_garbage_on_stdout_is_a_protocol_error(sandbox: DockerSandbox) -> None:
    from rlmbox.errors import ProtocolError

    sandbox.send({"t": "exec", "id": "g", "code": "send_raw(b'\\x00\\x00\\x00\\x05hello')"})
    with pytest.raises(ProtocolError):
        sandbox.recv(60)
    with pytest.raises(ProtocolError, match="cannot be trusted"):
        sandbox.recv(1)


def test_oversized_frame_is_refused_without_reading_it(sandbox: DockerSandbox) -> None:
    from rlmbox.errors import FrameTooLarge

    sandbox.send({"t": "exec", "id": "big", "code": "send_raw(b'\\xff\\xff\\xff\\xff')"})
    with pytest.raises(FrameTooLarge):
        sandbox.recv(60)


def test_stderr_flood_is_bounded(sandbox: DockerSandbox) -> None:
    """64 MiB written to stderr leaves a tail of at most a few KiB on the host."""
    code = "import os\nfor _ in range(1024): os.write(2, b'e' * 65536)\nanswer = 1"
    assert answer(sandbox, code) == 1
    assert len(sandbox._stream.stderr_tail) <= 32 * 1024


def test_recv_times_out_with_none(sandbox: DockerSandbox) -> None:
    started = time.monotonic()
    assert sandbox.recv(0.2) is None
    assert time.monotonic() - started >= 0.2


def test_unknown_runtime_is_refused() -> None:
    with pytest.raises(SandboxUnavailable, match="unknown Docker runtime"):
        DockerBackend("kata")


def test_run_helper_returns_errors(sandbox: DockerSandbox) -> None:
    frame = run(sandbox, "1/0")
    assert frame["status"] == "error"
    assert "ZeroDivisionError" in frame["error"]
