"""One trusted program from the agent bundle, run to completion inside a process jail.

The host runs a few programs on data a sandbox chose (the context search runs a
model-written regex). Such a program gets a sandbox's walls (``jail.py``: namespaces, no
network, a host uid of its own, a cgroup, rlimits; it installs seccomp and Landlock itself), an
empty environment, no host file but the bundle and interpreter (its one input file comes as
an open descriptor), and a wall-clock deadline after which the whole jail is killed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass

from rlmbox.errors import SandboxUnavailable
from rlmbox.sandboxes.base import ResourceLimits
from rlmbox.sandboxes.bundle import agent_bundle_dir
from rlmbox.sandboxes.process import spawner
from rlmbox.sandboxes.process.backend import sandbox_python
from rlmbox.sandboxes.process.cgroups import Cgroup, CgroupLimits, cgroup_version
from rlmbox.sandboxes.process.jail import bwrap_argv, jail_entry_argv
from rlmbox.sandboxes.process.uids import UidLease, lease_uid

_BUNDLE_INSIDE = "/rlmbox/agent"
_TMPFS_BYTES = 1024 * 1024   # the program writes nothing; bubblewrap wants a /tmp anyway


@dataclass(frozen=True)
class JailedRun:
    """How the program ended, measured on the host."""

    returncode: int      # negative: killed by that signal
    stdout: bytes
    cpu_seconds: float   # user + system time of the jail, as the kernel reports it
    timed_out: bool      # the host killed it at the deadline


class JailGroup:
    """The jails one owner runs. ``kill_all`` kills those running and every one started
    after it, so nothing the owner started outlives its end."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[Callable[[], None]] = set()
        self._killed = False

    def _join(self, kill: Callable[[], None]) -> bool:
        """Adds a started jail; False (the caller kills it) once the group was killed."""
        with self._lock:
            if not self._killed:
                self._running.add(kill)
            return not self._killed

    def _leave(self, kill: Callable[[], None]) -> None:
        with self._lock:
            self._running.discard(kill)

    def kill_all(self) -> None:
        with self._lock:
            self._killed = True
            running = list(self._running)
        for kill in running:
            kill()


def run_jailed(program: str, request: bytes, *, input_fd: int, limits: ResourceLimits,
               timeout: float, group: JailGroup | None = None) -> JailedRun:
    """Runs bundle file ``program`` with ``request`` on stdin and ``input_fd`` inherited;
    killed at ``timeout`` or when ``group`` is killed, whichever comes first."""
    bwrap = shutil.which("bwrap")
    drop_uid = os.geteuid() == 0
    python = sandbox_python(drop_uid)
    bundle = agent_bundle_dir()
    if bwrap:
        argv = [*bwrap_argv(bwrap, python, [(bundle, _BUNDLE_INSIDE)],
                            tmpfs_bytes=_TMPFS_BYTES, shm_bytes=_TMPFS_BYTES, info_fd=None,
                            as_pid_1=True, as_nobody=drop_uid),
                str(python), "-I", "-S", "-B", f"{_BUNDLE_INSIDE}/{program}"]
    else:
        argv = [str(python), "-I", "-S", "-B", str(bundle / program)]
    version = cgroup_version()
    cgroup = Cgroup("q-" + secrets.token_hex(6), CgroupLimits(
        limits.memory_bytes, limits.pids, limits.cpu_cores), version) if version else None
    lease = lease_uid() if drop_uid else None
    uid = None if lease is None else lease.uid
    try:
        entry = jail_entry_argv(limits, cgroup, bwrap=bwrap is not None, uid=uid)
        proc = spawner.spawn(lambda: subprocess.Popen(
            [*entry, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, env={}, close_fds=True, pass_fds=(input_fd,), cwd="/",
            start_new_session=True))
    except (OSError, SandboxUnavailable) as exc:
        _clean_up(cgroup, lease)
        raise SandboxUnavailable(f"cannot start {program} in a jail: {exc}") from exc
    return _finish(proc, request, cgroup, lease, timeout, group or JailGroup())


def _clean_up(cgroup: Cgroup | None, lease: UidLease | None) -> None:
    """Removes the cgroup (killing what is left) and returns the uid only once that
    worked: a uid whose processes might live on stays leased."""
    problems = cgroup.remove() if cgroup is not None else []
    if lease is not None and not problems:
        lease.release()


def _finish(proc: subprocess.Popen[bytes], request: bytes, cgroup: Cgroup | None,
            lease: UidLease | None, timeout: float, group: JailGroup) -> JailedRun:
    """Feeds the request, reads the answer, kills at the deadline (or with its group),
    reaps with rusage."""
    expired = threading.Event()
    reaping = threading.Lock()   # once reaped, bubblewrap's pid may name another process

    def kill() -> None:
        expired.set()
        with reaping:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)   # bubblewrap and its ns init
        if cgroup is not None:
            cgroup.kill_all()

    timer = threading.Timer(max(0.0, timeout), kill)
    timer.start()
    if not group._join(kill):
        kill()
    try:
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(request)  # type: ignore[union-attr]
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()  # type: ignore[union-attr]
        stdout = proc.stdout.read()  # type: ignore[union-attr]
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)   # exited, not reaped
        with reaping:
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        timer.cancel()
        group._leave(kill)
        if proc.returncode is None:
            kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        _clean_up(cgroup, lease)
    return JailedRun(proc.returncode, stdout, usage.ru_utime + usage.ru_stime,
                     expired.is_set())
