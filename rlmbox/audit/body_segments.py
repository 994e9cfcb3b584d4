"""Body segment files: many bodies appended to one file, so one fsync makes a batch durable.

A segment ``bodies/segment-NNNNNN.bin`` is a run of entries, each a fixed-size header line
then the body's bytes and a newline::

    RLMBODY1 <sha256 hex> <size, 20 digits> <L live | E erased>\\n<size bytes>\\n

The header's fixed size lets a body be erased in place (its bytes zeroed, ``L`` turned to
``E``) without moving any other entry. Entries are found by scanning headers; a scan stops
at the first entry that is not whole (a crash cut the last write short, or the file was
cut or garbled by hand), so every body after that point reads as missing, never as
something else: a body is only ever returned after its digest was checked by the reader.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rlmbox.audit.files import open_regular
from rlmbox.errors import AuditError

MAGIC = b"RLMBODY1 "
LIVE, ERASED = b"L", b"E"
HEADER_BYTES = len(MAGIC) + 64 + 1 + 20 + 1 + 1 + 1
_HEADER = re.compile(rb"RLMBODY1 ([0-9a-f]{64}) ([0-9]{20}) ([LE])\n\Z")
_SEGMENT = re.compile(r"^segment-(\d{6})\.bin$")


@dataclass(frozen=True, slots=True)
class Entry:
    """Where one body lies: its segment, the offset of its header, its size and state."""

    segment: Path
    offset: int
    size: int
    erased: bool

    @property
    def data_offset(self) -> int:
        return self.offset + HEADER_BYTES


def encode_entry(digest: str, data: bytes) -> bytes:
    """One live entry: header, bytes, newline."""
    return b"%s%s %020d %s\n%s\n" % (MAGIC, digest.encode("ascii"), len(data), LIVE, data)


def segment_files(root: Path) -> list[Path]:
    """The segments under ``root``, oldest first."""
    try:
        names = [(int(m.group(1)), root / m.group(0)) for m in
                 (_SEGMENT.match(entry.name) for entry in os.scandir(root)) if m]
    except FileNotFoundError:
        return []
    except NotADirectoryError as exc:
        raise AuditError(f"refusing {root}: it is not a directory") from exc
    return [path for _, path in sorted(names)]


def segment_name(index: int) -> str:
    """The file name of segment number ``index`` (1, 2, ...)."""
    return f"segment-{index:06d}.bin"


def segment_index(path: Path) -> int:
    """The number in a segment's file name."""
    match = _SEGMENT.match(path.name)
    if match is None:
        raise ValueError(f"not a body segment: {path}")
    return int(match.group(1))


def scan(fd: int, segment: Path, start: int = 0) -> Iterator[tuple[str, Entry]]:
    """``(digest, entry)`` for each whole entry from ``start`` on; stops at the first that is
    not. The offset just past the last one yielded is ``entry.data_offset + size + 1``."""
    size = os.fstat(fd).st_size
    offset = start
    while offset + HEADER_BYTES <= size:
        match = _HEADER.match(os.pread(fd, HEADER_BYTES, offset))
        if match is None:
            return
        length = int(match.group(2))
        end = offset + HEADER_BYTES + length + 1
        if end > size or os.pread(fd, 1, end - 1) != b"\n":
            return
        yield match.group(1).decode("ascii"), Entry(segment, offset, length,
                                                     match.group(3) == ERASED)
        offset = end


def whole_length(fd: int, segment: Path) -> int:
    """The length of the run of whole entries at the start of the segment."""
    end = 0
    for _, entry in scan(fd, segment):
        end = entry.data_offset + entry.size + 1
    return end


def is_torn_tail(fd: int, start: int) -> bool:
    """True if the bytes from ``start`` (just past the whole entries) to the end are one
    entry a crash cut short: a beginning of a header, or a header whose bytes run past the
    end. Anything else is damage, which a writer must leave for ``verify`` to report."""
    size = os.fstat(fd).st_size
    head = os.pread(fd, HEADER_BYTES, start)
    if len(head) < HEADER_BYTES:
        return MAGIC.startswith(head[: len(MAGIC)])
    match = _HEADER.match(head)
    return match is not None and start + HEADER_BYTES + int(match.group(2)) + 1 > size


def read_entry(entry: Entry) -> bytes | None:
    """The bytes of a live entry, ``None`` if erased or no longer there."""
    if entry.erased:
        return None
    try:
        fd = open_regular(entry.segment)
    except FileNotFoundError:
        return None
    try:
        header = _HEADER.match(os.pread(fd, HEADER_BYTES, entry.offset))
        if header is None or header.group(3) == ERASED:
            return None
        data = os.pread(fd, entry.size, entry.data_offset)
    finally:
        os.close(fd)
    return data if len(data) == entry.size else None


def is_live(fd: int, entry: Entry, digest: str) -> bool:
    """True while the header at ``entry``'s offset, read through ``fd`` (open on its
    segment), still names this body (digest and size) as live: it may have been erased,
    or the file truncated or replaced, since it was indexed."""
    header = _HEADER.match(os.pread(fd, HEADER_BYTES, entry.offset))
    return (header is not None and header.group(3) == LIVE
            and header.group(1) == digest.encode("ascii")
            and int(header.group(2)) == entry.size)


def erase_entry(entry: Entry) -> None:
    """Zero an entry's bytes and mark it erased, in place, durably."""
    fd = open_regular(entry.segment, os.O_WRONLY)
    try:
        zeros = bytes(min(entry.size, 1 << 20))
        done = 0
        while done < entry.size:
            chunk = zeros[: entry.size - done]
            done += os.pwrite(fd, chunk, entry.data_offset + done)
        os.pwrite(fd, ERASED, entry.offset + HEADER_BYTES - 2)
        os.fsync(fd)
    finally:
        os.close(fd)

