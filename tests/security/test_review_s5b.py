"""Review s5b: attacks on what changed this session at the sandbox boundary, the host-call
seam and the audit log (Docker host kill, idle threads reused by bounded host calls).

Each test performs the attack and asserts the promise the docs make; every one of them
held when written (none is an xfail), they pin promises that had no test of their own.
"""

from __future__ import annotations

import contextvars
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from rlmbox.runtime.bounded_call import CallAbandoned, Deadline, run_bounded
from rlmbox.sandboxes.docker.host_kill import ContainerProcesses
from rlmbox.sandboxes.process.pidfd import PinnedProcess

T = TypeVar("T")
_LEFT_BY_A_CALL = contextvars.ContextVar("_LEFT_BY_A_CALL", default="clean")


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_docker_host_kill_never_signals_a_process_that_is_not_the_containers(
        tmp_path: Path) -> None:
    """security.md row 25 (docker: "pidfd kill of the container's first process + kill of
    its cgroup") and host_kill.py ("a recycled pid is never hit"): the container's first
    process has exited, and the cgroup listing names a pid that is now someone else's (a
    bystander outside the container's cgroup). ``kill_all`` signals neither."""
    first = _sleeper()
    pinned = PinnedProcess.pin(first.pid, lambda _pid: True)
    assert pinned is not None
    first.kill()
    first.wait()                      # exited and reaped: its number is free for reuse
    bystander = _sleeper()
    try:
        procs = tmp_path / "cgroup.procs"
        procs.write_text(f"{bystander.pid}\n{first.pid}\n")   # a stale read of the cgroup
        container = ContainerProcesses(pinned, procs, secrets.token_hex(32))
        assert container.kill_all(timeout=0.2) is False   # never empty: the engine removes
        assert bystander.poll() is None, "kill_all signalled a process outside the container"
    finally:
        bystander.kill()
        bystander.wait()


def _bounded(work: Callable[[], T], seconds: float = 5.0) -> T:
    return run_bounded(work, Deadline(time.monotonic() + seconds, "test", seconds),
                       name="review", on_abandon=lambda _a: None, on_late=lambda _e: None)


def test_a_reused_call_thread_keeps_nothing_a_previous_call_set() -> None:
    """Idle threads are reused (bounded_call.py): context-local state a handler set (a
    trace's running call, a cluster cell's channel) must not reach the next call run on
    the same thread, and a thread still busy with an abandoned call takes no new one."""
    def dirty() -> threading.Thread:
        _LEFT_BY_A_CALL.set("dirty")
        return threading.current_thread()

    reused = 0
    for _ in range(5):   # another test's late call may park a thread in between: retry
        first = _bounded(dirty)
        seen, second = _bounded(lambda: (_LEFT_BY_A_CALL.get(), threading.current_thread()))
        assert seen == "clean"
        reused += second is first
    assert reused, "no call ran on the thread parked by the call before it"

    release = threading.Event()
    busy: list[threading.Thread] = []

    def hang() -> None:
        busy.append(threading.current_thread())
        release.wait(10)

    try:
        try:
            _bounded(hang, 0.05)
        except CallAbandoned:
            pass
        else:
            raise AssertionError("the hanging call was not abandoned")
        started = time.monotonic()
        after = _bounded(threading.current_thread, 2.0)
        assert time.monotonic() - started < 1.0
        assert after is not busy[0]   # the abandoned call still holds its thread
    finally:
        release.set()
