"""An index of the daemon's audit log by tenant and session: built once, then extended.

``GET /v1/audit`` used to rescan the whole log on each call, so one tenant with a big log
made every tenant's audit page slow. The index remembers, per tenant and per (tenant,
session), each event's ``(seq, file, offset)``, and how far into each log file it has
read; ``refresh`` reads only what the writer appended since. Files are known by inode, so
a rotation (``audit.jsonl`` renamed ``audit.NNNNNN.jsonl``) moves nothing in the index.
It also sums each tenant's audit bytes (its lines and the bodies they name), which the
daemon's per-tenant audit quota reads.

A log the index cannot read as a contiguous chain of records (a complete line that is not
a record, a gap in ``seq``, a record not where the index saw it) is corrupt: every call
raises ``AuditError`` from then on, never an empty or partial answer.
"""

from __future__ import annotations

import bisect
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from rlmbox.audit.files import MAX_LINE_BYTES, READ_TRIES, log_files, open_regular
from rlmbox.errors import AuditError


class Entry(NamedTuple):
    seq: int
    inode: int
    offset: int


class AuditCorrupt(AuditError):
    """The log is not a contiguous chain of readable records."""


class AuditIndex:
    """Thread-safe; ``refresh`` and ``page`` block on file reads (call them off the loop)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._by_tenant: dict[str, list[Entry]] = {}
        self._by_session: dict[tuple[str, str], list[Entry]] = {}
        self._bytes: dict[str, int] = {}
        self._read_to: dict[int, int] = {}   # inode -> bytes indexed
        self._paths: dict[int, Path] = {}
        self._last_seq: int | None = None
        self._failure: AuditCorrupt | None = None
        self._gap: str | None = None
        self.bytes_read = 0   # total log bytes read to build and extend the index

    def tenant_bytes(self, tenant: str) -> int:
        """Bytes of ``tenant``'s records and the bodies they name, as of the last refresh."""
        with self._lock:
            return self._bytes.get(tenant, 0)

    def refresh(self) -> None:
        """Indexes every complete record appended since the last call."""
        with self._lock:
            self._raise_if_failed()
            try:
                self._scan_until_done()
            except AuditCorrupt as exc:
                self._failure = exc
                raise

    def page(self, tenant: str, *, session: str | None, after_seq: int,
             limit: int) -> tuple[list[dict[str, Any]], bool]:
        """Up to ``limit`` of the tenant's records after ``after_seq``, and whether more
        follow."""
        self.refresh()
        with self._lock:
            entries = (self._by_tenant.get(tenant, []) if session is None
                       else self._by_session.get((tenant, session), []))
            start = bisect.bisect_right(entries, after_seq, key=lambda e: e.seq)
            chosen = entries[start:start + limit + 1]
        records = [self._read(entry) for entry in chosen[:limit]]
        return records, len(chosen) > limit

    # --- reading ---------------------------------------------------------------------

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise AuditCorrupt(str(self._failure))

    def _scan_until_done(self) -> None:
        """Passes until one reads to the end without a gap. A gap is a hole in the chain
        if the pass that met it made no progress and no rotation ran during it: a rotation
        in the pass made it read the new current file before the one just rotated (review
        s13: the index failed for good on a whole log), which the next pass reads."""
        crossed = 0   # passes in a row that a rotation crossed and that read nothing
        while True:
            listing = self._files()
            progressed = self._scan_once(listing)
            if self._gap is None:
                return
            if progressed:
                crossed = 0
                continue
            crossed += 1
            if self._files() == listing or crossed >= READ_TRIES:
                raise AuditCorrupt(self._gap)

    def _scan_once(self, listing: list[Path]) -> bool:
        """One pass over the files listed; True when it indexed anything."""
        progressed = False
        self._gap = None
        for path in listing:
            try:
                handle = _open(path)
            except FileNotFoundError:   # rotated away since the listing: next pass
                continue
            with handle:
                inode = os.fstat(handle.fileno()).st_ino
                self._paths[inode] = path
                progressed |= self._scan_file(handle, inode, path)
        return progressed

    def _files(self) -> list[Path]:
        try:
            return log_files(self.directory)
        except OSError as exc:
            raise AuditCorrupt(f"cannot list the audit log in {self.directory}: "
                               f"{exc.strerror or exc}") from exc

    def _scan_file(self, handle: Any, inode: int, path: Path) -> bool:
        start = self._read_to.get(inode, 0)
        handle.seek(start)
        offset = start
        progressed = False
        for line in _complete_lines(handle, path):
            self.bytes_read += len(line)
            record = _parse(line, path, offset)
            seq = record["seq"]
            if self._last_seq is not None and seq != self._last_seq + 1:
                if seq <= self._last_seq:
                    raise AuditCorrupt(f"{path.name} at byte {offset}: seq {seq} repeats or "
                                       f"goes back (after {self._last_seq})")
                # a file read before the tail of one rotated meanwhile: the next pass
                # reads that tail; if it cannot, the chain has a hole
                self._gap = (f"{path.name} at byte {offset}: seq {seq} follows "
                             f"{self._last_seq}; the records between are missing")
                break
            self._add(record, Entry(seq, inode, offset), len(line))
            self._last_seq = seq
            offset += len(line)
            progressed = True
        self._read_to[inode] = offset
        return progressed

    def _add(self, record: dict[str, Any], entry: Entry, line_bytes: int) -> None:
        tenant = record.get("tenant")
        if not isinstance(tenant, str):
            return   # the daemon's own events belong to no tenant
        self._by_tenant.setdefault(tenant, []).append(entry)
        session = record.get("session")
        if isinstance(session, str):
            self._by_session.setdefault((tenant, session), []).append(entry)
        self._bytes[tenant] = self._bytes.get(tenant, 0) + line_bytes + _body_bytes(record)

    def _read(self, entry: Entry) -> dict[str, Any]:
        path = self._paths.get(entry.inode)
        for _ in range(2):   # the file may have been rotated since: relist once
            if path is not None:
                try:
                    with _open(path) as handle:
                        if os.fstat(handle.fileno()).st_ino == entry.inode:
                            handle.seek(entry.offset)
                            record = _parse(handle.readline(), path, entry.offset)
                            if record["seq"] != entry.seq:
                                raise AuditCorrupt(
                                    f"{path.name} at byte {entry.offset}: expected seq "
                                    f"{entry.seq}, found {record['seq']}")
                            return record
                except FileNotFoundError:
                    pass
            path = self._relist(entry.inode)
        raise AuditCorrupt(f"the audit file holding seq {entry.seq} is gone")

    def _relist(self, inode: int) -> Path | None:
        for path in self._files():
            try:
                if path.stat().st_ino == inode:
                    with self._lock:
                        self._paths[inode] = path
                    return path
            except FileNotFoundError:
                continue
        return None


def _open(path: Path) -> BinaryIO:
    """A log file, read; ``AuditCorrupt`` for one that is not a regular file (a FIFO
    would block the read, ``/dev/zero`` never end)."""
    try:
        return os.fdopen(open_regular(path), "rb")
    except AuditError as exc:
        raise AuditCorrupt(str(exc)) from exc


def _complete_lines(handle: BinaryIO, path: Path) -> Iterator[bytes]:
    """Lines that end in a newline; a tail still being written waits for the next call.
    A line is read up to one byte past the longest record, so a tail longer than any
    record is refused, not held (joining a tail to each chunk read was quadratic: a 1 GiB
    newline-less tail took minutes a refresh, review s13b)."""
    while line := handle.readline(MAX_LINE_BYTES + 1):
        if len(line) > MAX_LINE_BYTES:   # its newline included, as audit show counts it
            raise AuditCorrupt(f"{path.name} at byte {handle.tell() - len(line)}: a line "
                               f"over {MAX_LINE_BYTES} bytes: not an audit record")
        if not line.endswith(b"\n"):
            return
        yield line


def _parse(line: bytes, path: Path, offset: int) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        record = None
    if (not line.endswith(b"\n") or not isinstance(record, dict)
            or not isinstance(record.get("seq"), int) or isinstance(record["seq"], bool)):
        raise AuditCorrupt(f"{path.name} at byte {offset}: not an audit record")
    return record


def _body_bytes(record: dict[str, Any]) -> int:
    names = record.get("bodies")
    if not isinstance(names, list):
        return 0
    sizes = (record.get(f"{name}_bytes") for name in names if isinstance(name, str))
    return sum(size for size in sizes if isinstance(size, int) and size > 0)
