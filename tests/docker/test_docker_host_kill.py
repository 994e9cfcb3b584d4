"""Closing a container on a local engine: the host ends every process, the engine removes
the rest off the caller's path (rlmbox/sandboxes/docker/host_kill.py)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from rlmbox.sandboxes.docker.backend import DockerSandbox
from rlmbox.sandboxes.docker.host_kill import REMOVALS, procs_file_of

ESCAPEES = (
    "import os, signal, subprocess, time\n"
    "if os.fork() == 0:\n"
    "    os.setsid()\n"
    "    if os.fork() == 0:\n"
    "        signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "        while True:\n            time.sleep(1)\n"
    "    os._exit(0)\n"
    "subprocess.Popen(['sh', '-c', 'trap \"\" TERM INT HUP; while :; do sleep 1; done'],"
    " start_new_session=True)\n"
    "time.sleep(0.3)\n"
    "answer = 'spawned'\n")


def _procs_file(engine: Any, sandbox: DockerSandbox) -> Path:
    pid = engine.api.inspect_container(sandbox.container_id)["State"]["Pid"]
    procs = procs_file_of(Path(f"/proc/{pid}/cgroup").read_text().splitlines())
    assert procs is not None
    return procs


def _pids(procs: Path) -> list[int]:
    try:
        return [int(p) for p in procs.read_text().split()]
    except OSError:   # the cgroup is gone: nothing is left in it
        return []


def test_kill_returns_with_no_process_left_and_removes_the_container_off_the_callers_thread(
        sandbox: DockerSandbox, engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox.send({"t": "exec", "id": "spawn", "code": ESCAPEES})
    frame = sandbox.recv(60)
    assert frame is not None
    assert frame["status"] == "ok", frame
    procs = _procs_file(engine, sandbox)
    assert len(_pids(procs)) >= 3   # the agent and its escapees, before the kill
    removed_on: list[threading.Thread] = []
    remove = engine.api.remove_container

    def recording_remove(*args: Any, **kwargs: Any) -> Any:
        removed_on.append(threading.current_thread())
        return remove(*args, **kwargs)

    monkeypatch.setattr(engine.api, "remove_container", recording_remove)
    sandbox.kill()
    assert _pids(procs) == []   # every process ended before kill returned
    assert threading.current_thread() not in removed_on
    assert REMOVALS.wait(60)
    assert len(removed_on) == 1
    assert engine.api.containers(all=True, filters={"id": sandbox.container_id}) == []
    assert sandbox.death_reason() == "killed by the host"
