"""Hostile review s13 of reading a live, rotating audit log (audit-format.md Promise 6, end;
Promises 5 and 8; the daemon's audit index, daemon.md).

``verify`` now reads the files again when a rotation crossed its read. The other readers of
a live log were looked at too: ``iter_records`` (``rlmbox audit show``, ``stats``, ``view``,
the daemon's session viewer, the cluster verifier) and the daemon's audit index
(``GET /v1/audit`` and the per-tenant audit quota).

Every case runs the real writer (``AuditLog``, its group commit and ``_rotate``) on real
files. Where a rotation must come at one exact moment of a reader, the reader is driven to
that moment (a generator's next item, the index's listing) and the writer rotates there, as
it does on its own whenever it fills a file while a reader is at that point.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from rlmbox.audit.log import AuditLog
from rlmbox.audit.reader import iter_records
from rlmbox.audit.verify import verify_log
from rlmbox.cli.main import main
from rlmbox.daemon.audit_index import AuditIndex
from rlmbox.errors import AuditError

FILE_BYTES = 4000
NOTE = "x" * 200   # ~330-byte records: a rotation about every 12 records


def _rotated(logdir: Path) -> int:
    return len(list(logdir.glob("audit.0*.jsonl")))


def _append(log: AuditLog, n: int, tenant: str = "a") -> None:
    log.append("host.call", tenant=tenant, session=f"s-{tenant}", n=n, note=NOTE)
    log.sync()


def _rotate_now(log: AuditLog, logdir: Path, n: int) -> int:
    """Appends (each synced) until the writer rotates; the record that did not fit is the
    first of the new current file. Returns the next ``n``."""
    before = _rotated(logdir)
    while _rotated(logdir) == before:
        _append(log, n)
        n += 1
    return n


# --- the daemon's audit index -------------------------------------------------------------

def test_the_audit_index_survives_a_rotation_between_its_listing_and_its_reads(
        logdir: Path) -> None:
    with AuditLog(logdir, max_file_bytes=FILE_BYTES) as log:
        n = 0
        while _rotated(logdir) < 3:
            _append(log, n)
            n += 1
        index = AuditIndex(logdir)
        index.refresh()   # everything so far, the current file to its end
        for _ in range(3):   # appended since: in the current file, not yet indexed
            _append(log, n)
            n += 1
        assert _rotated(logdir) == 3
        listed = index._files   # the index's own listing, then the writer rotates
        rotated_once: list[int] = []

        def listing_then_rotation() -> list[Path]:
            files = listed()
            if not rotated_once:
                rotated_once.append(_rotate_now(log, logdir, n))
            return files

        index._files = listing_then_rotation   # type: ignore[method-assign]
        failure = None
        try:
            index.refresh()
        except AuditError as exc:
            failure = exc
        index._files = listed   # type: ignore[method-assign]
        report = verify_log(logdir)
        assert report.ok, report.reason   # the log is whole
        assert failure is None, f"a whole log made the index fail: {failure}"
        page, _ = index.page("a", session=None, after_seq=0, limit=1000)
        assert [e["seq"] for e in page] == list(range(1, report.last_seq + 1))


# --- iter_records: audit show, stats, view, the daemon's session viewer -------------------

def test_reading_records_across_a_rotation_skips_none(logdir: Path) -> None:
    with AuditLog(logdir, max_file_bytes=FILE_BYTES) as log:
        n = 0
        while _rotated(logdir) < 2:
            _append(log, n)
            n += 1
        for _ in range(3):   # the current file holds records too
            _append(log, n)
            n += 1
        reading = iter_records(logdir)
        seqs = [next(reading)["seq"]]   # `audit show` is reading audit.000001.jsonl
        _rotate_now(log, logdir, n)
        seqs += [record["seq"] for record in reading]
    missing = sorted(set(range(1, seqs[-1] + 1)) - set(seqs))
    assert missing == [], f"records {missing} were skipped by a read the rotation crossed"


# --- the same two, with nothing but the writer's own timing --------------------------------

def _many_rotated_files(log: AuditLog, logdir: Path) -> int:
    """~300 rotated files: a reader's listing-to-open window is the time it takes to open
    them all, as in a daemon whose log has rotated for weeks."""
    n = 0
    while _rotated(logdir) < 300:
        for _ in range(30):
            log.append("host.call", tenant="a", session="s-a", n=n, note=NOTE)
            n += 1
        log.sync()
    return n


def test_the_audit_index_of_a_log_rotating_on_its_own_never_fails(logdir: Path) -> None:
    stop = threading.Event()
    failures: list[str] = []
    with AuditLog(logdir, max_file_bytes=FILE_BYTES) as log:
        writer = _writer(log, stop, _many_rotated_files(log, logdir))
        try:
            index = AuditIndex(logdir)   # the daemon builds it at start, then extends it
            for _ in range(400):   # here every 10 ms (the daemon: every second, each page)
                try:
                    index.refresh()
                except AuditError as exc:
                    failures.append(str(exc))
                    break
                time.sleep(0.01)
        finally:
            stop.set()
            writer.join()
        assert verify_log(logdir).ok   # the log is whole
    assert failures == []


def test_reading_a_log_rotating_on_its_own_skips_no_record(logdir: Path) -> None:
    stop = threading.Event()
    gaps: list[str] = []
    with AuditLog(logdir, max_file_bytes=FILE_BYTES) as log:
        writer = _writer(log, stop, _many_rotated_files(log, logdir))
        try:
            for _ in range(30):
                try:
                    seqs = [record["seq"] for record in iter_records(logdir)]
                except FileNotFoundError as exc:   # audit.jsonl gone for a moment
                    gaps.append(f"raised {exc}")
                    break
                if seqs != list(range(1, len(seqs) + 1)):
                    missing = sorted(set(range(1, seqs[-1] + 1)) - set(seqs))
                    gaps.append(f"skipped {len(missing)} records from seq {missing[0]}")
                    break
        finally:
            stop.set()
            writer.join()
    assert gaps == []


# --- verify: what held ---------------------------------------------------------------------

def _writer(log: AuditLog, stop: threading.Event, start: int) -> threading.Thread:
    def write() -> None:
        n = start
        while not stop.is_set():
            _append(log, n)
            n += 1
            stop.wait(0.003)

    thread = threading.Thread(target=write)
    thread.start()
    return thread


def _edit_a_rotated_record(logdir: Path) -> None:
    """Changes one field of the 3rd record of audit.000001.jsonl, canonically."""
    path = logdir / "audit.000001.jsonl"
    lines = path.read_bytes().split(b"\n")
    record = json.loads(lines[2])
    record["n"] = 10**6
    lines[2] = json.dumps(record, separators=(",", ":"), sort_keys=True,
                          ensure_ascii=False).encode()
    path.write_bytes(b"\n".join(lines))


def _delete_the_first_rotated_file(logdir: Path) -> None:
    (logdir / "audit.000001.jsonl").unlink()


@pytest.mark.parametrize(("tamper", "verdict"), [(_edit_a_rotated_record, "edited 3"),
                                                 (_delete_the_first_rotated_file, "deleted 1")])
def test_a_rotating_tampered_log_never_verifies(logdir: Path, tamper: Any,
                                                verdict: str) -> None:
    """Held: the retry never turns a tampered log into an ok one. A record of the first
    rotated file is edited (or that file deleted) while the writer goes on rotating; every
    verify (each read that a rotation crossed done again) reports it, none says ok."""
    stop = threading.Event()
    with AuditLog(logdir, max_file_bytes=FILE_BYTES, checkpoint_every=5) as log:
        n = 0
        while _rotated(logdir) < 2:
            _append(log, n)
            n += 1
        tamper(logdir)
        writer = _writer(log, stop, n)
        verdicts: list[str] = []
        try:
            before = _rotated(logdir)
            deadline = time.monotonic() + 20
            while (_rotated(logdir) < before + 8 or len(verdicts) < 10) \
                    and time.monotonic() < deadline:
                try:
                    report = verify_log(logdir)
                except AuditError as exc:   # rotated during 20 reads: no verdict
                    verdicts.append(f"raised: {exc}")
                    continue
                verdicts.append("ok" if report.ok else f"{report.kind} {report.first_bad_seq}")
        finally:
            stop.set()
            writer.join()
    assert _rotated(logdir) >= before + 8, "the log did not rotate under verify"
    assert verdicts
    assert all(v == verdict for v in verdicts), verdicts


def test_a_directory_whose_listing_never_settles_ends_verify_in_bounded_time(
        logdir: Path) -> None:
    """Held (Promise 8: neither waiting nor reading without end): someone who can write the
    directory adds a new rotated name every millisecond, so no listing is ever the same
    twice; verify stops after its 20 reads with an ``AuditError`` asking to verify again
    (the CLI: exit 2), in bounded time."""
    with AuditLog(logdir, max_file_bytes=FILE_BYTES) as log:
        for n in range(40):
            _append(log, n)
    stop = threading.Event()
    planted: list[Path] = []

    def plant() -> None:
        index = 500
        while not stop.is_set():
            path = logdir / f"audit.{index:06d}.jsonl"
            path.write_bytes(b"")
            planted.append(path)
            index += 1
            stop.wait(0.001)

    planter = threading.Thread(target=plant)
    planter.start()
    outcome = ""
    try:
        started = time.monotonic()
        try:
            report = verify_log(logdir)
            outcome = "ok" if report.ok else f"report {report.kind}"
        except AuditError as exc:
            outcome = f"raised: {exc}"
        took = time.monotonic() - started
    finally:
        stop.set()
        planter.join()
        for path in planted:
            os.unlink(path)
    assert took < 10, f"verify took {took:.1f} s"
    # empty planted files add no record: ok is true of a listing that held still once
    assert outcome == "ok" or outcome.startswith("raised: the log in"), outcome
    assert verify_log(logdir).ok   # once the directory holds still, it verifies


def test_a_fifo_planted_in_a_rotating_log_is_reported_at_once(logdir: Path) -> None:
    """Held (Promise 8): a FIFO under a rotated file's name, planted while the writer goes
    on rotating, is reported as damage at once; the retry neither waits on it nor reads it
    again and again."""
    stop = threading.Event()
    with AuditLog(logdir, max_file_bytes=FILE_BYTES) as log:
        n = 0
        while _rotated(logdir) < 2:
            _append(log, n)
            n += 1
        os.mkfifo(logdir / "audit.000090.jsonl")
        writer = _writer(log, stop, n)
        try:
            started = time.monotonic()
            reports = [verify_log(logdir) for _ in range(5)]
            took = time.monotonic() - started
        finally:
            stop.set()
            writer.join()
    assert took < 5
    assert all(not r.ok and r.kind == "malformed" and "FIFO" in r.reason for r in reports), \
        [(r.ok, r.kind, r.reason) for r in reports]


def test_the_cli_verifies_a_rotating_log_ok_every_time(
        logdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Held: ``rlmbox audit verify --allow-unsealed`` on a log the writer rotates under it
    exits 0 with an OK line every time (the retry), never FAIL, never a traceback."""
    stop = threading.Event()
    codes: list[int] = []
    with AuditLog(logdir, max_file_bytes=FILE_BYTES, checkpoint_every=5) as log:
        n = 0
        while _rotated(logdir) < 5:
            _append(log, n)
            n += 1
        writer = _writer(log, stop, n)
        try:
            before = _rotated(logdir)
            deadline = time.monotonic() + 20
            while (_rotated(logdir) < before + 8 or len(codes) < 10) \
                    and time.monotonic() < deadline:
                codes.append(main(["audit", "verify", str(logdir), "--allow-unsealed"]))
        finally:
            stop.set()
            writer.join()
    out = capsys.readouterr().out
    assert _rotated(logdir) >= before + 8
    assert set(codes) == {0}, out
    assert out.count("OK: ") == len(codes)


def test_a_huge_sparse_log_file_is_reported_not_raised(logdir: Path) -> None:
    with AuditLog(logdir, max_file_bytes=FILE_BYTES) as log:
        n = 0
        while _rotated(logdir) < 2:
            _append(log, n)
            n += 1
    with (logdir / "audit.000001.jsonl").open("r+b") as planted:
        planted.truncate(1 << 40)   # sparse: no block is written
    try:
        report = verify_log(logdir)
        outcome = f"{report.ok} {report.kind}"
    except MemoryError:
        outcome = "raised MemoryError"
    finally:
        (logdir / "audit.000001.jsonl").unlink()
    assert outcome.startswith("False "), outcome   # a report: the log is damaged
