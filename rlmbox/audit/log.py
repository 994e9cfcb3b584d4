"""``AuditLog``: the append-only, hash-chained, fsynced JSONL log every session writes to.

``append`` runs an event through the processor chain (redact -> digest bodies -> canonicalize
-> chain) and queues it; a background thread group-commits queued records (write + fsync).
``sync`` blocks until everything appended so far is durable: call it before acknowledging a
result to a caller. Once a write or fsync fails, the log is failed for good (fail closed).
"""

from __future__ import annotations

import enum
import fcntl
import json
import os
import threading
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from rlmbox.audit.bodies import BodyStore
from rlmbox.audit.canonical import GENESIS, normalize_fresh, record_digest
from rlmbox.audit.checkpoint import load_signer
from rlmbox.audit.files import (
    BODIES,
    CHECKPOINTS,
    CURRENT,
    LOCK,
    last_line,
    log_files,
    open_regular,
    repair_torn_tail,
)
from rlmbox.audit.processors import (
    BODIES_KEY,
    CHAIN_FIELDS,
    RESERVED,
    Canonicalize,
    DigestBodies,
    Processor,
    RedactSecrets,
    Sealed,
    run_chain,
    seal_after,
)
from rlmbox.audit.redact import DEFAULT_PATTERNS, Redactor
from rlmbox.audit.writer import GroupCommitWriter
from rlmbox.errors import AuditError, AuditRecordInvalid, AuditWriteError

SEVERITIES = frozenset({"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"})
_WARN_EVENTS = frozenset({"limit.exceeded", "audit.repair", "code.rejected", "session.refused",
                          "sandbox.killed"})


class _State(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"
    FORKED = "forked"   # in a forked child: the parent's log, not this process's to write


_OPEN_LOGS: weakref.WeakSet[AuditLog] = weakref.WeakSet()


def _disown_in_child() -> None:
    """A forked child inherits every open log with its descriptors and flock; were it to
    write, it and its parent would each take the next seq. The child writes nothing."""
    for log in list(_OPEN_LOGS):
        log._state = _State.FORKED


os.register_at_fork(after_in_child=_disown_in_child)


def default_severity(event: str, attributes: Mapping[str, Any]) -> str:
    """INFO, or WARN for refusals and limits, or ERROR for failed outcomes."""
    if attributes.get("outcome") == "error" or event.endswith(".error"):
        return "ERROR"
    if event in _WARN_EVENTS or attributes.get("decision") == "deny":
        return "WARN"
    return "INFO"


class AuditLog:
    """A tamper-evident audit log in one directory; one writer per directory (flock)."""

    def __init__(self, directory: Path, *, signing_key: Path | bytes | None = None,
                 checkpoint_every: int = 1000, max_file_bytes: int = 64 * 1024 * 1024,
                 flush_interval_s: float = 0.005, secrets: Iterable[str] = (),
                 patterns: Iterable[str] = DEFAULT_PATTERNS) -> None:
        self._directory = Path(directory)
        self._directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock_fd = self._take_directory_lock()
        try:
            self._open(signing_key, checkpoint_every=checkpoint_every,
                       max_file_bytes=max_file_bytes, flush_interval_s=flush_interval_s,
                       secrets=secrets, patterns=patterns)
        except BaseException:
            os.close(self._lock_fd)
            raise

    def _take_directory_lock(self) -> int:
        fd = open_regular(self._directory / LOCK, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise AuditError(f"another writer holds the audit log in {self._directory}") from exc
        return fd

    def _open(self, signing_key: Path | bytes | None, *, checkpoint_every: int,
              max_file_bytes: int, flush_interval_s: float, secrets: Iterable[str],
              patterns: Iterable[str]) -> None:
        signer = load_signer(self._directory, signing_key)
        repairs = [r for r in (repair_torn_tail(self._directory / CURRENT),
                               repair_torn_tail(self._directory / CHECKPOINTS)) if r]
        head_seq, head_digest = _find_head(self._directory)
        cp_seq, cp_digest = _last_checkpoint(self._directory, head_seq, head_digest)
        try:
            (self._directory / BODIES).mkdir(mode=0o700, exist_ok=True)
        except FileExistsError as exc:   # something else under its name
            raise AuditError(f"refusing {self._directory / BODIES}: it is not a "
                             "directory") from exc
        bodies = BodyStore(self._directory / BODIES)
        torn_segment = bodies.open_for_append()
        if torn_segment is not None:
            repairs.append(torn_segment)
        try:
            self._writer = GroupCommitWriter(
                self._directory, bodies=bodies, signer=signer,
                head_seq=head_seq, head_digest=head_digest, checkpoint_seq=cp_seq,
                checkpoint_digest=cp_digest, checkpoint_every=checkpoint_every,
                max_file_bytes=max_file_bytes, flush_interval_s=flush_interval_s)
        except BaseException:
            bodies.close()
            raise
        self._redactor = Redactor(secrets, patterns)
        self._processors: list[Processor] = [
            RedactSecrets(self._redactor), DigestBodies(self._writer.stage_body), Canonicalize()]
        self._lock = threading.Lock()
        self._state = _State.OPEN
        _OPEN_LOGS.add(self)
        for repair in repairs:
            self.append("audit.repair", file=repair.file, dropped_bytes=repair.dropped_bytes,
                        dropped_sha256=repair.dropped_sha256)
        if repairs:
            self.sync()

    @property
    def directory(self) -> Path:
        """The log directory."""
        return self._directory

    @property
    def path(self) -> Path:
        """The JSONL file currently written."""
        return self._directory / CURRENT

    @property
    def durable_seq(self) -> int:
        """The highest ``seq`` known to be written and fsynced."""
        return self._writer.durable_seq

    def synced_head(self) -> tuple[int, str]:
        """Syncs, then returns the last record's ``seq`` and digest: an anchor of the log as
        it is now, without reading it back (the cluster anchors node logs this way)."""
        if self._state is _State.FORKED:   # its lock may have been held at the fork
            raise self._not_open()
        with self._lock:
            seq, head = self._writer.queued_head()
        self.sync()
        return seq, head

    def append(self, event: str, *, session: str | None = None, parent: str | None = None,
               depth: int = 0, tenant: str | None = None,
               bodies: Mapping[str, str | bytes] | None = None,
               **attributes: Any) -> dict[str, Any]:
        """Record one event (queued, not yet durable) and return the record as written.

        Raises:
            AuditWriteError: the log is closed or failed before (fail closed).
            AuditRecordInvalid: the event cannot be recorded (reserved name, not JSON-able).
        """
        if self._state is not _State.OPEN:
            raise self._not_open()
        if not isinstance(event, str) or not event:
            raise AuditRecordInvalid("event must be a non-empty string")
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 0:
            raise AuditRecordInvalid("depth must be a non-negative integer")
        if not RESERVED.isdisjoint(attributes):
            clash = RESERVED.intersection(attributes)
            raise AuditRecordInvalid(f"attributes {sorted(clash)} are reserved for the chain")
        severity = attributes.pop("severity", None) or default_severity(event, attributes)
        if severity not in SEVERITIES:
            raise AuditRecordInvalid(f"severity {severity!r} is not one of {sorted(SEVERITIES)}")
        # ``attributes`` is this call's own dict (Python makes one per call for ``**``) and
        # holds none of these names (each is a parameter): the record is built in it
        event_dict = attributes
        event_dict["event"] = event
        event_dict["session"] = session
        event_dict["parent"] = parent
        event_dict["depth"] = depth
        event_dict["tenant"] = tenant
        event_dict["severity"] = severity
        if bodies:
            event_dict[BODIES_KEY] = dict(bodies)
            return self._append_through_chain(event_dict)
        record = normalize_fresh(event_dict)   # the record's own copy, checked
        with self._lock:
            if self._state is not _State.OPEN:
                raise self._not_open()
            try:
                sealed: Sealed | None = seal_after(record, *self._writer.queued_head())
            except AuditRecordInvalid:   # redacting may yet make it canonical (a surrogate
                sealed = None            # in a secret): the full chain decides
            if sealed is not None and not self._redactor.may_change(sealed.line):
                self._queue(sealed)
                return sealed.record
        # The line holds a secret, a credential pattern or an escape: the full chain redacts
        # the record before it takes a seq (the one sealed here was never queued).
        for field in CHAIN_FIELDS:
            record.pop(field, None)
        return self._append_through_chain(record)

    def _append_through_chain(self, event_dict: dict[str, Any]) -> dict[str, Any]:
        """Every step of the processor chain: bodies, and a record redaction may change."""
        event_dict = run_chain(self._processors, event_dict)
        with self._lock:
            if self._state is not _State.OPEN:
                raise self._not_open()
            self._queue(seal_after(event_dict, *self._writer.queued_head()))
            return event_dict

    def _queue(self, sealed: Sealed) -> None:
        """Hand ``sealed`` to the writer, whose queue holds the chain's head; called under
        the lock. Interrupted waiting for room (or refused), the record is not queued and
        the next one takes its seq (a gap would read as a deleted record)."""
        self._writer.submit(sealed.line, sealed.record["seq"], sealed.digest)

    def sync(self) -> None:
        """Block until every event appended so far is durable; raises ``AuditWriteError``."""
        if self._state is _State.FORKED:
            raise self._not_open()
        self._writer.sync()

    def _not_open(self) -> AuditWriteError:
        if self._state is _State.FORKED:
            return AuditWriteError("the audit log belongs to the process that opened it; "
                                   "this forked child may not write it")
        return AuditWriteError("the audit log is closed")

    def add_secret(self, value: str) -> None:
        """Redact ``value`` from every event appended from now on."""
        self._redactor.add(value)

    def redact(self, text: str) -> str:
        """``text`` with every secret and credential pattern replaced, as an attribute
        would be written: for a caller that cuts text before recording it."""
        return self._redactor.text(text)

    def close(self) -> None:
        """Sync, write a final checkpoint and release the directory; idempotent."""
        if self._state is _State.FORKED:   # its lock may have been held at the fork
            return
        with self._lock:
            if self._state is not _State.OPEN:
                return
            self._state = _State.CLOSED
        try:
            self._writer.close()
        finally:
            os.close(self._lock_fd)

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _find_head(directory: Path) -> tuple[int, str]:
    """``(seq, digest)`` of the last complete record across the files, or ``(0, GENESIS)``."""
    for path in reversed(log_files(directory)):
        line = last_line(path)
        if line is None:
            continue
        try:
            seq = json.loads(line.decode("utf-8"))["seq"]
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise AuditError(f"cannot resume {path}: its last record is unreadable; run "
                             f"'rlmbox audit verify {directory}'") from exc
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise AuditError(f"cannot resume {path}: its last record has no valid seq")
        return seq, record_digest(line)
    return 0, GENESIS


def _last_checkpoint(directory: Path, head_seq: int, head_digest: str) -> tuple[int, str]:
    """``(seq, line digest)`` of the last checkpoint; refuses a log cut short of it."""
    line = last_line(directory / CHECKPOINTS)
    if line is None:
        return 0, GENESIS
    try:
        obj = json.loads(line.decode("utf-8"))
        seq, signed = obj["seq"], obj["sha256"]
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise AuditError(
            f"cannot resume: the last checkpoint in {directory} is unreadable") from exc
    if not isinstance(seq, int) or seq > head_seq or (seq == head_seq and signed != head_digest):
        raise AuditError(f"cannot resume: the log in {directory} ends at seq {head_seq} but a "
                         f"checkpoint signs seq {seq}; the log was truncated or altered")
    return seq, record_digest(line)
