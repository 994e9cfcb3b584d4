"""The files of a log directory: naming, order, torn-tail repair and reading the last record.

``audit.jsonl`` is the file being written; full files are renamed ``audit.NNNNNN.jsonl``
(1, 2, ...) and the chain runs on across them in that order, ending in ``audit.jsonl``.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

CURRENT = "audit.jsonl"
CHECKPOINTS = "checkpoints.jsonl"
BODIES = "bodies"
LOCK = ".lock"
_ROTATED = re.compile(r"^audit\.(\d{6})\.jsonl$")


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
    if current.exists():
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
        fd = os.open(path, os.O_RDWR)
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
        fd = os.open(path, os.O_RDONLY)
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
