"""The walls a local process jail is built from, shared by every process rlmbox jails.

The agent's sandbox and the host's context searcher (which runs a model-written regex)
are both jails. They share the bubblewrap command line and the steps between fork and exec
(join the cgroup, set rlimits, the fallback namespaces, drop to the sandbox uid), so
neither drifts weaker than the other. Seccomp and Landlock come from ``confine.py``, which
the jailed program installs itself before it touches its input.
"""

from __future__ import annotations

import ctypes
import os
import resource
from collections.abc import Sequence
from pathlib import Path

from rlmbox.sandboxes.base import ResourceLimits
from rlmbox.sandboxes.process.cgroups import Cgroup

#: who jailed code is inside its own user namespace; on the host each jail has a uid of
#: its own (``uids.py``) when rlmbox runs as root
SANDBOX_UID = 65534
_CLONE_NEWNET, _CLONE_NEWIPC, _CLONE_NEWUTS = 0x40000000, 0x08000000, 0x04000000


def bwrap_argv(bwrap: str, python: Path, binds: Sequence[tuple[Path, str]], *,
               tmpfs_bytes: int, shm_bytes: int, info_fd: int | None,
               as_pid_1: bool = False, as_nobody: bool = False) -> list[str]:
    """bubblewrap's command line up to ``--``: new user, pid, net, ipc, uts and cgroup
    namespaces; /usr, the interpreter's prefix and ``binds`` read-only; a size-capped
    private /tmp as the working directory and a size-capped /dev/shm, /dev itself read-only
    (``--dev``'s tmpfs has no size cap); an empty environment but PATH, HOME and LANG.
    ``as_pid_1`` makes the program the namespace's init, so bubblewrap itself reaps it and
    the program's CPU time reaches the host in bubblewrap's rusage. ``as_nobody`` maps the
    jail's host uid (leased, ``uids.py``) to ``nobody`` inside."""
    argv = [bwrap, *(["--as-pid-1"] if as_pid_1 else []),
            "--unshare-user", *(["--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID)]
                                if as_nobody else []),
            "--unshare-pid", "--unshare-net",
            "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--disable-userns",
            "--die-with-parent", "--new-session", "--hostname", "rlmbox",
            "--ro-bind", "/usr", "/usr"]
    for top in ("bin", "sbin", "lib", "lib32", "lib64"):
        path = Path("/") / top
        if path.is_symlink():
            argv += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            argv += ["--ro-bind", str(path), str(path)]
    prefix = python.parent.parent
    if not str(python).startswith("/usr/"):
        argv += ["--ro-bind", str(prefix), str(prefix)]
    for source, inside in binds:
        argv += ["--ro-bind", str(source), inside]
    argv += ["--proc", "/proc", "--dev", "/dev",
             # device nodes stay usable on a read-only /dev
             "--size", str(shm_bytes), "--tmpfs", "/dev/shm", "--remount-ro", "/dev",
             "--size", str(tmpfs_bytes), "--tmpfs", "/tmp",
             "--chdir", "/tmp", "--clearenv",
             "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin",
             "--setenv", "HOME", "/tmp", "--setenv", "LANG", "C.UTF-8",
             "--setenv", "PYTHONDONTWRITEBYTECODE", "1"]
    if info_fd is not None:
        argv += ["--info-fd", str(info_fd)]
    return [*argv, "--"]


def enter_jail(limits: ResourceLimits, cgroup: Cgroup | None, *, bwrap: bool,
               uid: int | None) -> None:
    """Runs in the child between fork and exec: cgroup, rlimits, the fallback's
    namespaces (no bubblewrap, root), then the jail's own host ``uid`` (None: stay).
    Order matters: joining the cgroup and unsharing need root, so the uid goes last."""
    if cgroup is not None:
        for procs in cgroup.procs_files():
            with open(procs, "w") as handle:
                handle.write("0")
    extra = 256 * 1024 * 1024
    address_space = limits.memory_bytes * 2 + extra if cgroup else limits.memory_bytes + extra
    for which, value in ((resource.RLIMIT_AS, address_space),
                         (resource.RLIMIT_CPU, limits.cpu_seconds),
                         (resource.RLIMIT_NOFILE, limits.open_files),
                         (resource.RLIMIT_FSIZE, limits.file_size_bytes),
                         (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(which, (value, value))
    if not bwrap and os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(_CLONE_NEWNET | _CLONE_NEWIPC | _CLONE_NEWUTS) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"unshare of the net/ipc/uts namespaces: {os.strerror(err)}")
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
