"""Verification: walk the chain, check the signed checkpoints and bodies, name the first bad record.

``verify_log`` never raises for anything found in the files: every problem, including bytes
that are not JSON at all, is a ``VerifyReport`` with ``ok=False``. It raises ``AuditError``
only when asked to verify something that is not there (no directory, unreadable key).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlmbox.audit.bodies import BodyStore, is_digest
from rlmbox.audit.canonical import GENESIS, canonical_bytes, record_digest
from rlmbox.audit.checkpoint import (
    ED25519,
    HMAC_SHA256,
    PUBLIC_KEY_FILE,
    Checker,
    HmacKey,
    load_public_key,
    parse_checkpoint,
)
from rlmbox.audit.files import BODIES, CHECKPOINTS, READ_TRIES, log_files, read_regular
from rlmbox.errors import AuditError

#: ``VerifyReport.kind`` values for a failed verification.
KINDS = ("malformed", "edited", "deleted", "reordered", "spliced", "rewritten", "truncated",
         "bad_signature", "bad_body")

_REQUIRED: dict[str, tuple[type, ...]] = {
    "seq": (int,), "ts": (str,), "event": (str,), "prev": (str,), "severity": (str,),
    "depth": (int,), "session": (str, type(None)), "parent": (str, type(None)),
    "tenant": (str, type(None)),
}


@dataclass(frozen=True, slots=True)
class MissingBody:
    """A body named by a record but absent from the store (erased or never stored)."""

    seq: int
    name: str
    sha256: str


@dataclass
class VerifyReport:
    """The outcome of a verification. ``ok`` is the verdict; the rest says why and how much."""

    ok: bool = True
    first_bad_seq: int | None = None
    last_bad_seq: int | None = None   # with ``rewritten``: the bad range ends here
    kind: str = ""
    reason: str = ""
    events: int = 0
    last_seq: int = 0
    head: str = GENESIS
    files: list[str] = field(default_factory=list)
    checkpoints: int = 0
    anchors: int = 0
    last_checkpoint_seq: int = 0
    unsealed_events: int = 0
    torn_tail_bytes: int = 0
    missing_bodies: list[MissingBody] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    key_source: str = ""

    @property
    def sealed(self) -> bool:
        """True when a signed checkpoint covers the last record: only then would cutting
        the log short (with its checkpoints) be detected."""
        return self.unsealed_events == 0

    def unsealed_explanation(self) -> str:
        """What cannot be proven about the records no checkpoint covers."""
        first = self.last_checkpoint_seq + 1
        if self.last_checkpoint_seq == 0:
            return (f"no signed checkpoint covers them: a log cut short (its checkpoints "
                    f"deleted with it) or rewritten by whoever can write {', '.join(self.files)} "
                    "would look the same")
        return (f"records {first}..{self.last_seq} are not covered by a signed checkpoint (the "
                "log is still open, its writer crashed, or checkpoints were removed): their "
                "truncation or rewrite would not be detected")

    def fail(self, kind: str, seq: int | None, reason: str) -> VerifyReport:
        """Record the first failure (later ones are ignored) and return ``self``."""
        if self.ok:
            self.ok, self.kind, self.first_bad_seq, self.reason = False, kind, seq, reason
            self.last_bad_seq = seq
        return self


@dataclass
class _Line:
    file: str
    number: int  # 1-based line number in its file
    raw: bytes


def verify_log(path: Path, *, public_key: bytes | Path | None = None,
               hmac_key: bytes | None = None, check_bodies: bool = True,
               anchors: Mapping[int, str] | None = None) -> VerifyReport:
    """Verify the log in ``path`` (the directory, or any of its JSONL files).

    Args:
        public_key: PEM Ed25519 public key to pin; default: ``audit.pub`` in the directory,
            which only proves integrity against someone who cannot write that directory.
        hmac_key: the HMAC key, for logs written with ``signing_key=bytes``.
        check_bodies: also check every referenced body (missing is a warning, altered fails).
        anchors: ``{seq: record digest}`` kept off the host (:mod:`rlmbox.audit.anchor`);
            the log must still hold each, which a re-signed rewrite cannot fake.
    """
    path = Path(path)
    directory = path if path.is_dir() else path.parent
    if not directory.is_dir():
        raise AuditError(f"no audit log at {path}")
    checker, key_source = _resolve_checker(directory, public_key, hmac_key)
    try:
        cp_data, streams = _read_still(directory)
    except _OddFile as odd:   # a FIFO, directory, socket or symlink in a log file's place
        report = VerifyReport(files=[p.name for p in odd.files], key_source=key_source)
        return report.fail("malformed", None, str(odd.error))
    bodies = BodyStore(directory / BODIES) if check_bodies else None
    report = verify_streams(streams, cp_data, checker=checker, bodies=bodies,
                            anchors=anchors)
    report.key_source = key_source
    return report


class _OddFile(Exception):
    def __init__(self, files: list[Path], error: AuditError) -> None:
        super().__init__(str(error))
        self.files, self.error = files, error


def _read_still(directory: Path) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The log's checkpoints and files, read while no rotation ran: a live log rotates by
    renaming its current file and making a new one, and a read across that raised (the
    current file gone for a moment) or missed the file just rotated (a whole log reported
    broken). A listing that changed while the files were read is read again; the rotated
    names only grow, so an unchanged listing is one state of the log."""
    for _ in range(READ_TRIES):
        files = log_files(directory)
        try:
            cp_data = _read_if_there(directory / CHECKPOINTS)
            streams = [(p.name, _read_whole(p)) for p in files]
        except FileNotFoundError:
            continue
        except AuditError as exc:
            raise _OddFile(files, exc) from exc
        if files and log_files(directory) == files:
            return cp_data, streams
    if not log_files(directory):
        raise AuditError(f"no audit log files in {directory}")
    raise AuditError(f"the log in {directory} rotated during each of {READ_TRIES} reads; "
                     f"verify it again (or verify a copy)")


def _read_whole(path: Path) -> bytes:
    """A file of the log directory, whole; one too big to hold is damage to report, not a
    crash (a sparse 1 TiB file takes no disk: reviews s13, s13b)."""
    try:
        return read_regular(path)
    except MemoryError:
        raise AuditError(f"refusing {path}: {path.stat().st_size} bytes, more than this "
                         f"machine can hold to verify") from None


def _read_if_there(path: Path) -> bytes:
    try:
        return _read_whole(path)
    except FileNotFoundError:
        return b""


def verify_bytes(log: bytes, checkpoints: bytes = b"", *,
                 checker: Checker | None = None) -> VerifyReport:
    """Verify an in-memory log (one file) and checkpoint file; used by the fuzz target."""
    return verify_streams([("audit.jsonl", log)], checkpoints, checker=checker, bodies=None)


def _resolve_checker(directory: Path, public_key: bytes | Path | None,
                     hmac_key: bytes | None) -> tuple[Checker | None, str]:
    if hmac_key is not None:
        return HmacKey(hmac_key), "hmac key given"
    if public_key is not None:
        data = public_key if isinstance(public_key, bytes) else Path(public_key).read_bytes()
        return load_public_key(data), "pinned public key"
    try:
        local = _read_whole(directory / PUBLIC_KEY_FILE)   # AuditError for an odd file
    except FileNotFoundError:
        return None, "none"
    return load_public_key(local), f"{PUBLIC_KEY_FILE} in the log directory"


def verify_streams(streams: Sequence[tuple[str, bytes]], checkpoints: bytes, *,
                   checker: Checker | None, bodies: BodyStore | None,
                   anchors: Mapping[int, str] | None = None) -> VerifyReport:
    """Verify log files given in chain order, against the checkpoint file's bytes (and
    the off-host anchors, when given)."""
    report = VerifyReport(files=[name for name, _ in streams])
    signed = _check_checkpoints(checkpoints, checker, report)
    if not report.ok:
        return report
    lines = list(_split_lines(streams, report))
    if not report.ok:
        return report
    anchored = dict(anchors or {})
    _walk_chain(lines, signed, bodies, report, anchored)
    if bodies is not None and report.ok:
        _check_segment_files(bodies, report)
    if not report.ok:
        return report
    if any(seq > report.last_seq for seq in anchored):
        return report.fail("truncated", report.last_seq + 1,
                           f"the log ends at seq {report.last_seq} but an off-host anchor names "
                           f"seq {max(anchored)}: records were removed (and the rest re-signed)")
    report.anchors = len(anchored)
    beyond = [seq for seq in signed if seq > report.last_seq]
    if beyond:
        return report.fail("truncated", report.last_seq + 1,
                           f"the log ends at seq {report.last_seq} but a checkpoint signs seq "
                           f"{max(beyond)}: records after {report.last_seq} were removed")
    report.unsealed_events = report.last_seq - report.last_checkpoint_seq
    return report


def _parse_object(raw: bytes) -> dict[str, Any]:
    """Parse one canonical JSON object; ``ValueError``/``TypeError`` say what is wrong."""
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(f"not UTF-8 JSON ({type(exc).__name__})") from exc
    if not isinstance(obj, dict):
        raise TypeError("not a JSON object")
    try:
        canonical = canonical_bytes(obj)
    except AuditError as exc:
        raise ValueError("not canonical JSON") from exc
    if canonical != raw:
        raise ValueError("not in canonical form (bytes differ from the canonical encoding)")
    return obj


def _check_checkpoints(data: bytes, checker: Checker | None,
                       report: VerifyReport) -> dict[int, str]:
    """Parse and check every checkpoint; returns ``{seq: signed record digest}``."""
    signed: dict[int, str] = {}
    parts = data.split(b"\n")
    if parts[-1]:
        report.warnings.append(f"checkpoints file ends in a torn line ({len(parts[-1])} bytes); "
                               "it is repaired when the log is next opened")
    prev, last_seq = GENESIS, 0
    for number, raw in enumerate(parts[:-1], start=1):
        try:
            cp = parse_checkpoint(_parse_object(raw))
        except (ValueError, TypeError, AuditError) as exc:
            report.fail("malformed", None, f"checkpoint line {number}: {exc}")
            return signed
        if cp.prev != prev:
            report.fail("bad_signature", cp.seq, f"checkpoint line {number} (seq {cp.seq}) does "
                        "not link to the previous checkpoint: a checkpoint was removed or edited")
            return signed
        if cp.seq <= last_seq:
            report.fail("bad_signature", cp.seq, f"checkpoint line {number}: seq {cp.seq} does not "
                        f"follow seq {last_seq}")
            return signed
        reason = _signature_problem(cp.alg, cp.key_id, cp.message, cp.sig, checker)
        if reason:
            report.fail("bad_signature", cp.seq,
                        f"checkpoint line {number} (seq {cp.seq}): {reason}")
            return signed
        signed[cp.seq] = cp.sha256
        prev, last_seq = record_digest(raw), cp.seq
    report.checkpoints = len(signed)
    return signed


def _signature_problem(alg: str, key_id: str, message: bytes, sig: bytes,
                       checker: Checker | None) -> str:
    if alg not in (ED25519, HMAC_SHA256):
        return f"unknown signature algorithm {alg!r}"
    if checker is None:
        return (f"signed with {alg} but no key was given to check it "
                "(pass --public-key or --hmac-key-file)")
    if checker.alg != alg or checker.key_id != key_id:
        return f"signed by {alg} key {key_id}, not by the given {checker.alg} key {checker.key_id}"
    if not checker.verify(message, sig):
        return "bad signature"
    return ""


def _split_lines(streams: Sequence[tuple[str, bytes]], report: VerifyReport) -> Iterator[_Line]:
    for index, (name, data) in enumerate(streams):
        parts = data.split(b"\n")
        for number, raw in enumerate(parts[:-1], start=1):
            yield _Line(name, number, raw)
        if parts[-1]:
            if index == len(streams) - 1:
                report.torn_tail_bytes = len(parts[-1])
                report.warnings.append(
                    f"{name} ends in a torn line ({len(parts[-1])} bytes, a write cut short by a "
                    "crash); it is dropped and reported when the log is next opened")
            else:
                report.fail("malformed", None, f"{name}: rotated file ends without a newline")


def _walk_chain(lines: list[_Line], signed: dict[int, str], bodies: BodyStore | None,
                report: VerifyReport, anchored: dict[int, str]) -> None:
    expected, prev, last_good_cp = 1, GENESIS, 0
    for index, line in enumerate(lines):
        where = f"{line.file} line {line.number}"
        try:
            rec = _parse_object(line.raw)
            _check_fields(rec)
        except (ValueError, TypeError) as exc:
            report.fail("malformed", expected,
                        f"record at {where} (expected seq {expected}): {exc}")
            return
        seq = rec["seq"]
        if seq != expected:
            _seq_failure(lines, index, seq=seq, expected=expected, where=where, report=report)
            return
        if rec["prev"] != prev:
            if seq == 1:
                report.fail("edited", 1,
                            f"record 1 ({where}) does not start from the genesis value")
            else:
                report.fail("edited", seq - 1,
                            f"record {seq - 1} was altered: its hash does not match the prev "
                            f"stored in record {seq} ({where})")
            return
        digest = record_digest(line.raw)
        if not _matches_pins(lines, index, seq, digest, where, signed, anchored,
                             last_good_cp, report):
            return
        if seq in signed:
            last_good_cp = seq
        if bodies is not None and not _check_bodies(rec, bodies, report, where):
            return
        expected, prev = seq + 1, digest
        report.events += 1
        report.last_seq, report.head = seq, digest
    report.last_checkpoint_seq = last_good_cp


def _matches_pins(lines: list[_Line], index: int, seq: int, digest: str, where: str,
                  signed: dict[int, str], anchored: dict[int, str], last_good_cp: int,
                  report: VerifyReport) -> bool:
    """Checks record ``seq`` against its signed checkpoint and its off-host anchor."""
    if seq in signed and signed[seq] != digest:
        if _next_prev(lines, index) not in (None, digest) or last_good_cp == seq - 1:
            # the next record's prev, or the checkpoint on the record before, pins the rest
            report.fail("edited", seq, f"record {seq} ({where}) was altered: it matches "
                        "neither its signed checkpoint nor the prev of the next record")
        else:
            # a checkpoint signs a head, not each record: any of these may be the forgery
            report.fail("rewritten", last_good_cp + 1,
                        f"record {seq} ({where}) differs from the record its signed checkpoint "
                        f"names: some record in {last_good_cp + 1}..{seq} was altered and the "
                        "chain after it recomputed (a forged record, or an edit)")
            report.last_bad_seq = seq
        return False
    if seq in anchored and anchored[seq] != digest:
        report.fail("rewritten", seq,
                    f"record {seq} ({where}) is not the record the off-host anchor names: "
                    f"the log was rewritten at or before seq {seq}, checkpoints signed anew")
        return False
    return True


def _next_prev(lines: list[_Line], index: int) -> object:
    """The ``prev`` the record after ``index`` holds, or ``None``."""
    if index + 1 >= len(lines):
        return None
    try:
        return json.loads(lines[index + 1].raw.decode("utf-8")).get("prev")
    except (ValueError, AttributeError, RecursionError):
        return None


def _check_fields(rec: dict[str, Any]) -> None:
    for name, types in _REQUIRED.items():
        if name not in rec:
            raise ValueError(f"missing field {name!r}")
        value = rec[name]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise TypeError(f"field {name!r} has the wrong type")
    if rec["seq"] < 1:
        raise ValueError("seq is not positive")
    if not is_digest(rec["prev"]):
        raise ValueError("prev is not a SHA-256 hex digest")


def _seq_failure(lines: list[_Line], index: int, *, seq: int, expected: int, where: str,
                 report: VerifyReport) -> None:
    if seq < expected:
        report.fail("spliced", seq, f"record at {where} repeats seq {seq} (expected {expected}): "
                    "a record was inserted or duplicated")
        return
    later = _later_seqs(lines[index + 1:])
    if expected in later:
        report.fail("reordered", expected, f"record {expected} appears after record {seq} "
                    f"({where}): records were reordered")
    else:
        missing = f"{expected}" if seq == expected + 1 else f"{expected}..{seq - 1}"
        report.fail("deleted", expected, f"record(s) {missing} missing before {where} "
                    f"(found seq {seq})")


def _later_seqs(lines: list[_Line]) -> set[int]:
    found: set[int] = set()
    for line in lines:
        try:
            seq = json.loads(line.raw.decode("utf-8")).get("seq")
        except (ValueError, AttributeError, RecursionError):
            continue
        if isinstance(seq, int):
            found.add(seq)
    return found


def _check_bodies(rec: dict[str, Any], bodies: BodyStore, report: VerifyReport,
                  where: str) -> bool:
    names = rec.get("bodies", [])
    if not isinstance(names, list):
        report.fail("malformed", rec["seq"], f"record {rec['seq']} ({where}): bodies is not a list")
        return False
    for name in names:
        digest = rec.get(f"{name}_sha256") if isinstance(name, str) else None
        if not is_digest(digest):
            report.fail("malformed", rec["seq"],
                        f"record {rec['seq']} ({where}): body {name!r} has no valid digest")
            return False
        try:
            status = bodies.check(digest)
        except AuditError as exc:   # a body file or segment that is not a regular file
            report.fail("bad_body", rec["seq"], f"record {rec['seq']} ({where}): body "
                        f"{name!r} ({digest[:12]}...) cannot be checked: {exc}")
            return False
        if status == "missing":
            report.missing_bodies.append(MissingBody(rec["seq"], str(name), digest))
        elif status == "corrupt":
            report.fail("bad_body", rec["seq"], f"record {rec['seq']} ({where}): body {name!r} "
                        f"({digest[:12]}...) does not match its digest: the body was altered")
            return False
    return True


def _check_segment_files(bodies: BodyStore, report: VerifyReport) -> None:
    """Fails the report for a segment that is not a regular file, even one no record's
    body led to (opening the log would refuse it)."""
    try:
        bodies.index_segments()
    except AuditError as exc:
        report.fail("bad_body", None, f"body segment: {exc}")
