"""A host uid of its own for each jail, so no other process on the host shares it.

Jails used to run as uid 65534 ("nobody"), shared with every service that drops to it: such
a process could read a live sandbox's stage directory (its path is in bubblewrap's
world-readable command line), signal the sandbox's processes, or ptrace them (their user
namespace is owned by that uid). Each jail now leases a uid from a range no account uses.
A lease is an ``flock`` on a file named after the uid, so two live jails never share a uid
across the rlmbox processes that share this ``/run``, and a crashed holder's lease frees
itself. A uid some visible process still runs as is skipped too (a jail started by an
rlmbox in another mount namespace, or after someone removed the lease files), read from
``/proc`` at each lease.
Lease files are never unlinked (unlinking a locked file lets two holders lock two inodes
of one name); leases are taken lowest-first, so their number stays near the peak number of
live jails.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path
from typing import Final

from rlmbox.errors import SandboxUnavailable

#: above systemd's container range (524288-1879048191) and below 2**31: no account's
UID_BASE: Final = 2_000_000_000
UID_SPAN: Final = 1 << 20
LEASE_DIR: Final = Path("/run/rlmbox/uids")

_lock = threading.Lock()
_held: set[int] = set()   # this process's live leases: skipped without a system call


class UidLease:
    """One leased uid, held until :meth:`release` (or the holder's death)."""

    def __init__(self, uid: int, fd: int) -> None:
        self.uid = uid
        self._fd: int | None = fd

    def release(self) -> None:
        """Frees the uid; call only once no process runs as it. Idempotent."""
        with _lock:
            fd, self._fd = self._fd, None
            if fd is not None:
                os.close(fd)   # closing the only descriptor drops the flock
                _held.discard(self.uid)


def _try(uid: int) -> UidLease | None:
    if uid in _held:
        return None
    fd = os.open(LEASE_DIR / str(uid), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    _held.add(uid)
    return UidLease(uid, fd)


def uids_running() -> set[int]:
    """The uids of the range that a live process visible in ``/proc`` runs as (real,
    effective, saved or filesystem uid); a zombie, which can do nothing, is not counted."""
    found: set[int] = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status", "rb") as status:
                for line in status:
                    if line.startswith(b"State:") and line.split()[1] in (b"Z", b"X"):
                        break
                    if line.startswith(b"Uid:"):
                        found.update(uid for uid in map(int, line.split()[1:])
                                     if UID_BASE <= uid < UID_BASE + UID_SPAN)
                        break
        except (OSError, ValueError):
            continue   # the process ended meanwhile
    return found


def lease_uid(prefer: int | None = None) -> UidLease:
    """The lowest free uid of the range (``prefer`` first when it is free): unleased here
    and not run as by any visible process."""
    try:
        LEASE_DIR.mkdir(parents=True, mode=0o700, exist_ok=True)
        os.chmod(LEASE_DIR, 0o700)
        with _lock:
            running = uids_running()
            if prefer is not None and UID_BASE <= prefer < UID_BASE + UID_SPAN \
                    and prefer not in running:
                lease = _try(prefer)
                if lease is not None:
                    return lease
            for uid in range(UID_BASE, UID_BASE + UID_SPAN):
                if uid in running:
                    continue
                lease = _try(uid)
                if lease is not None:
                    return lease
    except OSError as exc:
        raise SandboxUnavailable(f"cannot lease a sandbox uid under {LEASE_DIR}: {exc}") \
            from exc
    raise SandboxUnavailable(f"all {UID_SPAN} sandbox uids are in use")

