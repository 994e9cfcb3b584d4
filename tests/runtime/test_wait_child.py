"""Reaping a sandbox's bwrap at its exit, woken by its pidfd (Popen.wait(timeout) polls
with sleeps that double up to 50 ms, so a close waited up to twice as long as the exit)."""

from __future__ import annotations

import subprocess
import sys

from rlmbox.sandboxes.process.pidfd import PinnedProcess, wait_child


def _child(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code])


def test_a_child_that_exits_is_reaped_with_its_status() -> None:
    child = _child("import time, sys; time.sleep(0.05); sys.exit(3)")
    wait_child(child, timeout=30)
    assert child.returncode == 3


def test_a_child_still_running_at_the_timeout_is_left_unreaped() -> None:
    child = _child("import time; time.sleep(30)")
    try:
        wait_child(child, timeout=0.05)
        assert child.returncode is None
        pinned = PinnedProcess.pin(child.pid, lambda _pid: True)
        assert pinned is not None   # still running, still ours
        assert not pinned.exited()
        pinned.release()
    finally:
        child.kill()
        child.wait()
