"""Signalling a process by identity, not by number.

A pid names whatever process holds it *now*: once the process we meant has exited and been
reaped, the kernel may give its number to an unrelated process, and a kill by number (we
run as root) would hit that one. A pidfd refers to one process for its whole life. So we
open the pidfd first, then check that it is ours (its parent, its cgroup, its start time):
the check cannot go stale before the signal is sent, because the pidfd no longer follows
the number.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path


def stat_fields(pid: int) -> list[str] | None:
    """Fields 3 onwards of /proc/PID/stat (state first), or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    fields = stat.rpartition(")")[2].split()
    return fields if len(fields) > 19 else None


def parent_of(pid: int) -> int | None:
    """The parent pid of ``pid``, or None when it is gone."""
    fields = stat_fields(pid)
    return int(fields[1]) if fields else None


class PinnedProcess:
    """A process held by a pidfd: signals reach it or nothing, never a successor."""

    def __init__(self, fd: int, pid: int) -> None:
        self._fd: int | None = fd
        self.pid = pid
        # the fd is used and released under it: a kill on one thread releases it while
        # another signals (an interrupt, the cell's own thread ending the sandbox); a check
        # then use without it met a closed fd (EBADF), or one whose number was reused
        self._lock = threading.Lock()

    @classmethod
    def pin(cls, pid: int, is_ours: Callable[[int], bool]) -> PinnedProcess | None:
        """Opens ``pid`` and keeps it only if ``is_ours(pid)`` holds once it is pinned;
        None when it is gone or belongs to someone else."""
        if pid <= 1:
            return None
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return None
        if not is_ours(pid):
            os.close(fd)
            return None
        return cls(fd, pid)

    def signal(self, sig: int) -> bool:
        """Sends ``sig``; False when the process has exited (or the pin was released)."""
        with self._lock:
            if self._fd is None:
                return False
            try:
                signal.pidfd_send_signal(self._fd, sig)
            except ProcessLookupError:
                return False
            return True

    def exited(self, timeout: float = 0.0) -> bool:
        """Whether the process has ended (its pidfd reads ready), waiting up to ``timeout``
        seconds for it; True once released."""
        with self._lock:   # a copy to wait on: a release meanwhile need not wait for us
            if self._fd is None:
                return True
            fd = os.dup(self._fd)
        try:
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            return bool(poller.poll(max(0, int(timeout * 1000))))
        finally:
            os.close(fd)

    def release(self) -> None:
        with self._lock:
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd = None


def wait_child(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Reaps our child ``proc`` as soon as it exits, waiting at most ``timeout``: its
    pidfd wakes us at the exit, where ``Popen.wait(timeout)`` polls with sleeps that double
    up to 50 ms (a close waited up to twice as long as the exit took)."""
    if proc.poll() is not None:
        return
    try:
        fd = os.pidfd_open(proc.pid)   # unreaped, so the pid is still our child's
    except ProcessLookupError:
        proc.poll()
        return
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if poller.poll(max(0, int(timeout * 1000))):
            proc.wait()
    finally:
        os.close(fd)


def kill_if_ours(pid: int, is_ours: Callable[[int], bool],
                 sig: int = signal.SIGKILL) -> bool:
    """Signals ``pid`` only if it is, once pinned, the process ``is_ours`` recognises;
    True when the signal was sent."""
    pinned = PinnedProcess.pin(pid, is_ours)
    if pinned is None:
        return False
    try:
        return pinned.signal(sig)
    finally:
        pinned.release()
