"""One trusted program from the agent bundle, run to completion inside a process jail.

The host runs a few programs on data a sandbox chose (the context search runs a
model-written regex). Such a program gets a sandbox's walls (``jail.py``: namespaces, no
network, the sandbox uid, a cgroup, rlimits; it installs seccomp and Landlock itself), an
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
from dataclasses import dataclass

from rlmbox.errors import SandboxUnavailable
from rlmbox.sandboxes.base import ResourceLimits
from rlmbox.sandboxes.bundle import agent_bundle_dir
from rlmbox.sandboxes.process import spawner
from rlmbox.sandboxes.process.backend import sandbox_python
from rlmbox.sandboxes.process.cgroups import Cgroup, CgroupLimits, cgroup_version
from rlmbox.sandboxes.process.jail import bwrap_argv, enter_jail

_BUNDLE_INSIDE = "/rlmbox/agent"
_TMPFS_BYTES = 1024 * 1024   # the program writes nothing; bubblewrap wants a /tmp anyway


@dataclass(frozen=True)
class JailedRun:
    """How the program ended, measured on the host."""

    returncode: int      # negative: killed by that signal
    stdout: bytes
    cpu_seconds: float   # user + system time of the jail, as the kernel reports it
    timed_out: bool      # the host killed it at the deadline


def run_jailed(program: str, request: bytes, *, input_fd: int, limits: ResourceLimits,
               timeout: float) -> JailedRun:
    """Runs bundle file ``program`` with ``request`` on stdin and ``input_fd`` inherited."""
    bwrap = shutil.which("bwrap")
    drop_uid = os.geteuid() == 0
    python = sandbox_python(drop_uid)
    bundle = agent_bundle_dir()
    if bwrap:
        argv = [*bwrap_argv(bwrap, python, [(bundle, _BUNDLE_INSIDE)],
                            tmpfs_bytes=_TMPFS_BYTES, shm_bytes=_TMPFS_BYTES, info_fd=None,
                            as_pid_1=True),
                str(python), "-I", "-S", "-B", f"{_BUNDLE_INSIDE}/{program}"]
    else:
        argv = [str(python), "-I", "-S", "-B", str(bundle / program)]
    version = cgroup_version()
    cgroup = Cgroup("q-" + secrets.token_hex(6), CgroupLimits(
        limits.memory_bytes, limits.pids, limits.cpu_cores), version) if version else None
    try:
        proc = spawner.spawn(lambda: subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env={}, close_fds=True, pass_fds=(input_fd,), cwd="/",
            preexec_fn=lambda: enter_jail(  # noqa: PLW1509 - forked on the spawner thread
                limits, cgroup, bwrap=bwrap is not None, drop_uid=drop_uid),
            start_new_session=True))
    except OSError as exc:
        if cgroup is not None:
            cgroup.remove()
        raise SandboxUnavailable(f"cannot start {program} in a jail: {exc}") from exc
    return _finish(proc, request, cgroup, timeout)


def _finish(proc: subprocess.Popen[bytes], request: bytes, cgroup: Cgroup | None,
            timeout: float) -> JailedRun:
    """Feeds the request, reads the answer, kills at the deadline, reaps with rusage."""
    expired = threading.Event()

    def kill() -> None:
        expired.set()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)   # bubblewrap and its pid namespace's init
        if cgroup is not None:
            cgroup.kill_all()

    timer = threading.Timer(max(0.0, timeout), kill)
    timer.start()
    try:
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(request)  # type: ignore[union-attr]
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()  # type: ignore[union-attr]
        stdout = proc.stdout.read()  # type: ignore[union-attr]
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        timer.cancel()
        if proc.returncode is None:
            kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        if cgroup is not None:
            cgroup.remove()
    return JailedRun(proc.returncode, stdout, usage.ru_utime + usage.ru_stime,
                     expired.is_set())
