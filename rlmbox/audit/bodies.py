"""The content-addressed body store beside the log: bodies by digest, in segment files.

Bodies live outside the chain (the event holds only the digest and size), so erasing one,
e.g. for personal data, leaves the chain verifiable; the verifier reports it as missing.
New bodies are appended to segments (``body_segments.py``), one write and one fsync per
batch however many bodies it holds; logs written before segments keep one file per body,
``bodies/<aa>/<sha256>``, and both are read.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TypeGuard

from rlmbox.audit.body_segments import (
    HEADER_BYTES,
    Entry,
    encode_entry,
    erase_entry,
    is_live,
    is_torn_tail,
    read_entry,
    scan,
    segment_files,
    segment_index,
    segment_name,
    whole_length,
)
from rlmbox.audit.files import TornTail, is_regular, open_regular, read_regular
from rlmbox.errors import AuditError

_HEX = frozenset("0123456789abcdef")
_APPEND_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND
#: Segments the writer keeps open for reading headers; past it all are closed and reopened.
_MAX_READERS = 16


def is_digest(value: object) -> TypeGuard[str]:
    """True for a lowercase SHA-256 hex string."""
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


class BodyStore:
    """Reads, erases and (for the one open log) durably appends bodies by digest."""

    def __init__(self, root: Path, *, max_segment_bytes: int = 64 * 1024 * 1024) -> None:
        self.root = root
        self._max_segment_bytes = max_segment_bytes
        self._index: dict[str, Entry] = {}
        self._scanned: dict[Path, int] = {}   # how far each segment has been indexed
        self._fd = -1
        self._segment: Path | None = None
        self._size = 0
        self._readers: dict[Path, int] = {}   # segment -> O_RDONLY fd, for ``_stored``

    # -- reading -------------------------------------------------------------------------

    def read(self, digest: str) -> bytes | None:
        """The body, or ``None`` if it was never stored or has been erased.

        Raises ``AuditError`` for a body file or segment that is not a regular file.
        """
        if not is_digest(digest):
            return None
        try:
            return read_regular(self._legacy_path(digest))
        except FileNotFoundError:
            pass
        entry = self._find(digest)
        return None if entry is None else read_entry(entry)

    def check(self, digest: str) -> str:
        """``"ok"``, ``"missing"`` or ``"corrupt"`` (present but not matching its digest);
        ``AuditError`` as for ``read``."""
        data = self.read(digest)
        if data is None:
            return "missing"
        return "ok" if hashlib.sha256(data).hexdigest() == digest else "corrupt"

    def erase(self, digest: str) -> bool:
        """Erase every stored copy of a body (zeroed in its segment, or its file removed),
        durably; True if there was one. The records naming it still verify."""
        if not is_digest(digest):
            raise ValueError(f"not a SHA-256 digest: {digest!r}")
        found = False
        legacy = self._legacy_path(digest)
        if os.path.lexists(legacy):   # whatever it is: unlink never follows a symlink
            legacy.unlink()
            fsync_dir(legacy.parent)
            found = True
        for segment in segment_files(self.root):
            fd = open_regular(segment)
            try:
                entries = [entry for name, entry in scan(fd, segment)
                           if name == digest and not entry.erased]
            finally:
                os.close(fd)
            for entry in entries:
                erase_entry(entry)
                found = True
        self._index.pop(digest, None)
        return found

    def _legacy_path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest

    def _find(self, digest: str) -> Entry | None:
        entry = self._index.get(digest)
        if entry is None or entry.erased:
            self.index_segments()
            entry = self._index.get(digest)
        return entry

    def index_segments(self) -> None:
        """Index the entries written since the last look (by this or another process).

        Raises ``AuditError`` for a segment that is not a regular file.
        """
        for segment in segment_files(self.root):
            try:
                fd = open_regular(segment)
            except FileNotFoundError:
                continue
            try:
                for name, entry in scan(fd, segment, self._scanned.get(segment, 0)):
                    known = self._index.get(name)
                    if known is None or known.erased:
                        self._index[name] = entry
                    self._scanned[segment] = entry.data_offset + entry.size + 1
            finally:
                os.close(fd)

    # -- appending (the log's writer thread only) ----------------------------------------

    def open_for_append(self) -> TornTail | None:
        """Open the newest segment for appending, first cutting an entry a crash left
        partial (no record names it: records are written only after their bodies' fsync).
        Returns what was cut, for the log to audit. A segment damaged otherwise is left as
        it is, for ``verify`` to report, and a new segment is started after it."""
        segments = segment_files(self.root)
        if not segments:
            return None
        segment = segments[-1]
        fd = open_regular(segment, os.O_RDWR)
        try:
            size = os.fstat(fd).st_size
            keep = whole_length(fd, segment)
            torn = None
            if keep < size and is_torn_tail(fd, keep):
                dropped = os.pread(fd, size - keep, keep)
                os.ftruncate(fd, keep)
                os.fsync(fd)
                torn = TornTail(f"{self.root.name}/{segment.name}", size - keep,
                                hashlib.sha256(dropped).hexdigest())
                size = keep
        finally:
            os.close(fd)
        self._segment = segment
        if keep < size:
            self._start_segment()   # damaged: appending after it would be lost to a scan
        else:
            self._fd = open_regular(segment, _APPEND_FLAGS)
            self._size = keep
        return torn

    def write_durably(self, bodies: Mapping[str, bytes]) -> None:
        """Append the bodies not stored yet to the current segment and fsync it once.

        Raises ``OSError``; the caller turns that into a fail-closed log.
        """
        self._drop_moved_readers()
        new = {digest: data for digest, data in bodies.items() if not self._stored(digest)}
        if not new:
            return
        if (self._fd < 0 or self._size >= self._max_segment_bytes or self._segment is None
                or not same_file(self._fd, self._segment)):   # full, or moved away under us
            self._start_segment()
        chunk = b"".join(encode_entry(digest, data) for digest, data in new.items())
        offset = os.fstat(self._fd).st_size   # where O_APPEND puts it, even if cut under us
        write_all(self._fd, chunk)
        os.fsync(self._fd)
        self._size = offset + len(chunk)
        if len(self._index) > 100_000:   # bound memory; a duplicate entry is harmless
            self._index.clear()
            self._scanned.clear()
        segment = self._segment
        if segment is not None:
            for digest, data in new.items():
                self._index[digest] = Entry(segment, offset, len(data), erased=False)
                offset += HEADER_BYTES + len(data) + 1
            self._scanned[segment] = self._size

    def _stored(self, digest: str) -> bool:
        """Stored and not erased or removed since (``rlmbox audit erase`` may run beside
        the writer). The header is read through a kept descriptor: an open per body was
        a tenth of a trivial cell's cost."""
        entry = self._index.get(digest)
        if entry is not None:
            fd = self._reader(entry.segment)
            if fd is not None and is_live(fd, entry, digest):
                return True
        return is_regular(self._legacy_path(digest))

    def _drop_moved_readers(self) -> None:
        """Closes each kept descriptor whose path no longer names its file (the segment was
        removed, moved away or replaced): it must neither vouch for bodies nor keep a
        removed segment's bytes alive on disk."""
        for segment, fd in list(self._readers.items()):
            if not same_file(fd, segment):
                os.close(fd)
                del self._readers[segment]

    def _reader(self, segment: Path) -> int | None:
        """A kept read descriptor on ``segment``, or ``None`` when it is gone (or is not a
        regular file any more): its bodies are then written again."""
        fd = self._readers.get(segment)
        if fd is not None:
            return fd
        if len(self._readers) >= _MAX_READERS:
            self._close_readers()
        try:
            fd = open_regular(segment)
        except (FileNotFoundError, AuditError):   # gone, or something planted in its place
            return None
        self._readers[segment] = fd
        return fd

    def _close_readers(self) -> None:
        for fd in self._readers.values():
            os.close(fd)
        self._readers.clear()

    def _start_segment(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        newest = self._segment or next(reversed(segment_files(self.root)), None)
        index = segment_index(newest) + 1 if newest is not None else 1
        self._segment = self.root / segment_name(index)
        self._fd = open_regular(self._segment, _APPEND_FLAGS)
        self._size = os.fstat(self._fd).st_size
        fsync_dir(self.root)

    def close(self) -> None:
        """Close the segment being appended to and the kept read descriptors."""
        self._close_readers()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def same_file(fd: int, path: Path) -> bool:
    """True while ``path`` still names the file open on ``fd``."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written (a short write is not an error)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def fsync_dir(directory: Path) -> None:
    """fsync a directory so that entries created or renamed in it are durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
