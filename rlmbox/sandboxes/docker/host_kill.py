"""Closing a container on a local engine without waiting for the engine: the host kills its
processes itself, and the engine removes what is left on a thread of its own.

``docker rm -f`` answers only once the engine has handled the container's exit (unmounted
its root, released its network): 80 ms on runc and 170 ms on runsc on a 2-core host, all of
it on the closing caller's path. With the engine on this machine the host can do the part
that matters for safety at once: SIGKILL the container's first process through a pidfd
pinned while the container was known to be running (a recycled pid is never hit), then
SIGKILL every process still in the container's cgroup until it holds none (runsc's gofer
and the ptrace stubs; an escapee that left the pid namespace's tree). Only when the cgroup
is empty does ``kill`` return; the engine's removal (record, writable layer, volumes) then
runs on :data:`REMOVALS`' thread. A removal lost to the host process dying is found by
``rlmbox gc`` by the container's owner labels, like any orphan.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from rlmbox.sandboxes.docker.cgroup_files import cgroup_file_of
from rlmbox.sandboxes.process.cgroups import kill_until_empty
from rlmbox.sandboxes.process.pidfd import PinnedProcess

log = logging.getLogger("rlmbox.docker")


_CGROUP_ROOT = Path("/sys/fs/cgroup")
#: how long ``kill`` waits for a container's cgroup to empty before falling back to the engine
KILL_TIMEOUT_S = 5.0


def procs_file_of(lines: list[str], root: Path = _CGROUP_ROOT) -> Path | None:
    """From a ``/proc/PID/cgroup`` listing: the ``cgroup.procs`` of the process's pids
    cgroup (v1) or of its unified cgroup (v2), or None."""
    return cgroup_file_of(lines, root, controller="pids", v1_mounts=("pids",),
                          v1_name="cgroup.procs", v2_name="cgroup.procs")


def _membership(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return []


class ContainerProcesses:
    """A running container's processes as this host sees them: its first process pinned,
    and the cgroup that holds them all."""

    def __init__(self, first: PinnedProcess, procs: Path, container_id: str) -> None:
        self._first = first
        self._procs = procs
        self._container_id = container_id

    @classmethod
    def pin(cls, pid: int, container_id: str) -> ContainerProcesses | None:
        """Pins ``pid`` if it is, once pinned, in ``container_id``'s cgroup; None when it
        is gone, someone else's, or its cgroup cannot be found."""
        first = PinnedProcess.pin(pid, lambda p: _in_container(p, container_id))
        if first is None:
            return None
        procs = procs_file_of(_membership(pid))
        if procs is None:
            first.release()
            return None
        return cls(first, procs, container_id)

    def exited(self) -> bool:
        """Whether the first process has ended (the container died or was killed)."""
        return self._first.exited()

    def pids(self) -> list[int]:
        """The processes in the container's cgroup now (none once it is gone)."""
        try:
            return [int(p) for p in self._procs.read_text().split()]
        except OSError:
            return []

    def kill_first(self) -> None:
        """SIGKILLs the first process now, through its pidfd (the container's pid 1 on
        runc, the sandbox on runsc: the rest go with it), not waiting for the engine."""
        with contextlib.suppress(OSError):   # released meanwhile by a kill_all
            self._first.signal(signal.SIGKILL)

    def kill_all(self, timeout: float = KILL_TIMEOUT_S) -> bool:
        """SIGKILLs the first process, then every process left in the cgroup, until it
        holds none; True when it is empty within ``timeout``."""
        self._first.signal(signal.SIGKILL)
        deadline = time.monotonic() + timeout
        # woken at its exit (on runc the pid namespace's last process goes before it)
        # rather than polling the cgroup from the start
        self._first.exited(timeout)
        try:
            return kill_until_empty(self.pids,
                                    lambda p: _in_container(p, self._container_id), deadline)
        finally:
            self._first.release()


def _in_container(pid: int, container_id: str) -> bool:
    return any(container_id in line for line in _membership(pid))


class Removals:
    """Engine removals run one after another on a background thread, off the closing
    caller's path; :meth:`wait` (and the interpreter's exit) waits for those queued."""

    def __init__(self) -> None:
        self._fresh()
        self._exit_wait = False
        # a forked child has no thread, and may have forked while another held the lock:
        # it starts empty (the parent's queued removals stay the parent's)
        os.register_at_fork(after_in_child=self._fresh)

    def _fresh(self) -> None:
        self._queue: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pending = 0
        self._idle = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None

    def add(self, removal: Callable[[], None]) -> None:
        with self._lock:
            self._pending += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="rlmbox-docker-removals",
                                                daemon=True)
                self._thread.start()
                if not self._exit_wait:
                    self._exit_wait = True
                    atexit.register(self.wait)
        self._queue.put(removal)

    def wait(self, timeout: float = 60.0) -> bool:
        """Blocks until every removal queued so far has run; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def _run(self) -> None:
        while True:
            removal = self._queue.get()
            try:
                removal()
            except BaseException as exc:   # the queue must outlive any failure
                # the stopped container stays, owner-labelled, for `rlmbox gc`
                log.warning("rlmbox: a container's removal failed: %s: %s",
                            type(exc).__name__, exc)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()


#: the process's one queue of engine removals (a thread started on first use)
REMOVALS = Removals()
