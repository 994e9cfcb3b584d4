"""The walls a local process jail is built from, shared by every process rlmbox jails.

The agent's sandbox and the host's context searcher (which runs a model-written regex)
are both jails. They share the bubblewrap command line and the programs exec'd before it
(join the cgroup, set rlimits, the fallback namespaces, drop to the sandbox uid), so
neither drifts weaker than the other. Seccomp and Landlock come from ``confine.py``, which
the jailed program installs itself before it touches its input.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

from rlmbox.errors import SandboxUnavailable
from rlmbox.sandboxes.base import ResourceLimits
from rlmbox.sandboxes.process.cgroups import Cgroup

#: who jailed code is inside its own user namespace; on the host each jail has a uid of
#: its own (``uids.py``) when rlmbox runs as root
SANDBOX_UID = 65534


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


def jail_entry_argv(limits: ResourceLimits, cgroup: Cgroup | None, *, bwrap: bool,
                    uid: int | None) -> list[str]:
    """The programs that put a jailed process in its walls before its own program runs,
    each exec'ing the next: the cgroup (``sh``), rlimits (``prlimit``), the fallback's
    namespaces (``unshare``: no bubblewrap, root), then the jail's own host ``uid``
    (``setpriv``; None: stay). Exec'd, not run as a ``preexec_fn``: that makes CPython fork
    the whole host (about 25 ms for the daemon, the GIL held, every thread stalled) where
    without one it uses vfork. Order matters: joining the cgroup and unsharing need root,
    so the uid goes last; the pid stays the same through every exec.

    Raises:
        SandboxUnavailable: one of the programs is not installed.
    """
    argv: list[str] = []
    if cgroup is not None:
        argv += [_tool("sh"), "-c", _JOIN_THEN_EXEC, "rlmbox-jail", *cgroup.procs_files(),
                 "--"]
    extra = 256 * 1024 * 1024
    address_space = limits.memory_bytes * 2 + extra if cgroup else limits.memory_bytes + extra
    argv += [_tool("prlimit")]
    for option, value in (("as", address_space), ("cpu", limits.cpu_seconds),
                          ("nofile", limits.open_files), ("fsize", limits.file_size_bytes),
                          ("core", 0)):
        argv.append(f"--{option}={value}:{value}")
    argv.append("--")
    if not bwrap and os.geteuid() == 0:
        argv += [_tool("unshare"), "--net", "--ipc", "--uts", "--"]
    if uid is not None:
        argv += [_tool("setpriv"), f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]
    return argv


# writes "0" (the writer itself) into each cgroup.procs file named before "--", then execs
# the rest; a failed write ends it (status 125) before anything of the jail's runs
_JOIN_THEN_EXEC = ('while [ "$#" -gt 0 ] && [ "$1" != -- ]; do echo 0 >"$1" || exit 125; '
                   'shift; done; shift; exec "$@"')


@functools.cache
def _tool(name: str) -> str:
    for directory in ("/usr/bin", "/bin", "/usr/sbin", "/sbin"):
        path = Path(directory) / name
        if os.access(path, os.X_OK):
            return str(path)
    raise SandboxUnavailable(f"cannot build a jail: {name} (util-linux / a POSIX shell) is "
                             "not installed")
