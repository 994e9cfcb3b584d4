"""The files of a log directory: naming, order, torn-tail repair and reading the last record.

``audit.jsonl`` is the file being written; full files are renamed ``audit.NNNNNN.jsonl``
(1, 2, ...) and the chain runs on across them in that order, ending in ``audit.jsonl``.
Every file rlmbox reads or writes in a log directory is opened through ``open_regular``.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from rlmbox.errors import AuditError

CURRENT = "audit.jsonl"
CHECKPOINTS = "checkpoints.jsonl"
BODIES = "bodies"
LOCK = ".lock"
#: How often a reader of a live log lists and opens again when a rotation crossed it.
READ_TRIES = 20
#: A longer line is no record rlmbox wrote (bodies live apart): readers refuse it rather
#: than hold it (a sparse file of zeros is a 1 TiB "line" on no disk at all).
MAX_LINE_BYTES = 32 * 1024 * 1024
_ROTATED = re.compile(r"^audit\.(\d{6})\.jsonl$")


#: What an ``open`` error means here (``O_NOFOLLOW`` turns a symlink into ``ELOOP``).
_OPEN_REFUSALS = {errno.ELOOP: "it is a symbolic link", errno.EISDIR: "it is a directory",
                  errno.ENXIO: "it is a socket or a FIFO", errno.ENODEV: "it is a device",
                  errno.ENOTDIR: "a part of its path is not a directory"}
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
_ONLY_REGULAR = "rlmbox makes only regular files in a log directory"


def open_regular(path: Path, flags: int = os.O_RDONLY, mode: int = 0o600) -> int:
    """Open a file of a log directory, refusing anything but a regular file.

    rlmbox makes only regular files there, so anything else under a log file's name was
    planted: a FIFO would block the open until a writer came (``O_NONBLOCK``, which a
    regular file ignores), ``/dev/zero`` would never end, and a symlink (``O_NOFOLLOW``)
    would let whoever can write the directory point a root verifier, or the writer, at any
    path. Raises ``FileNotFoundError`` when nothing is there, ``AuditError`` naming the path
    for an odd file, and ``OSError`` for a failure of the file system itself.
    """
    try:
        fd = os.open(path, flags | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except FileNotFoundError:
        raise
    except OSError as exc:
        what = _OPEN_REFUSALS.get(exc.errno or 0)
        if what is None:
            raise
        raise AuditError(f"refusing {path}: {what}; {_ONLY_REGULAR}") from exc
    try:
        kind = os.fstat(fd).st_mode
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(kind):
        os.close(fd)
        what = next((name for test, name in _KINDS if test(kind)), "an odd file")
        raise AuditError(f"refusing {path}: it is {what}; {_ONLY_REGULAR}")
    return fd


def read_regular(path: Path) -> bytes:
    """The bytes of a regular file of a log directory (see ``open_regular``)."""
    with os.fdopen(open_regular(path), "rb") as handle:
        return handle.read()


def is_regular(path: Path) -> bool:
    """True if ``path`` itself (not a symlink's target) is a regular file."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False


def rotated_files(directory: Path) -> list[Path]:
    """Rotated files, oldest first."""
    found = []
    for entry in directory.iterdir():
        match = _ROTATED.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry))
    return [path for _, path in sorted(found)]


def log_files(directory: Path) -> list[Path]:
    """Every log file in chain order (rotated files, then the current one if present)."""
    files = rotated_files(directory)
    current = directory / CURRENT
    if os.path.lexists(current):   # a dangling symlink too, for the open to refuse
        files.append(current)
    return files


def next_rotated_name(directory: Path) -> Path:
    """The name the current file gets when it is rotated."""
    rotated = rotated_files(directory)
    index = int(_ROTATED.match(rotated[-1].name).group(1)) + 1 if rotated else 1  # type: ignore[union-attr]
    return directory / f"audit.{index:06d}.jsonl"


@dataclass(frozen=True, slots=True)
class TornTail:
    """What a repair dropped from the end of a file."""

    file: str
    dropped_bytes: int
    dropped_sha256: str


def repair_torn_tail(path: Path) -> TornTail | None:
    """Cut an incomplete final line (no newline: a write cut short by a crash) and fsync.

    Returns what was dropped, or ``None`` if the file ends cleanly or does not exist.
    """
    try:
        fd = open_regular(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return None
        keep = _last_newline_end(fd, size)
        dropped = os.pread(fd, size - keep, keep)
        os.ftruncate(fd, keep)
        os.fsync(fd)
        return TornTail(path.name, size - keep, hashlib.sha256(dropped).hexdigest())
    finally:
        os.close(fd)


def _last_newline_end(fd: int, size: int) -> int:
    """Offset just after the last ``\\n`` before ``size`` (0 if there is none)."""
    end = size
    while end > 0:
        start = max(0, end - 65536)
        chunk = os.pread(fd, end - start, start)
        at = chunk.rfind(b"\n")
        if at >= 0:
            return start + at + 1
        end = start
    return 0


def last_line(path: Path) -> bytes | None:
    """The last complete line of ``path`` without its newline, or ``None`` if there is none."""
    try:
        fd = open_regular(path)
    except FileNotFoundError:
        return None
    try:
        size = os.fstat(fd).st_size
        end = _last_newline_end(fd, size)  # just after the last complete line
        if end == 0:
            return None
        start = _last_newline_end(fd, end - 1)
        return os.pread(fd, end - 1 - start, start)
    finally:
        os.close(fd)
