"""Hostile review s13b of the readers of a live audit log (audit-format.md Promises 5, 6
and 8; the daemon's audit index, daemon.md).

Review s13 fixed ``verify`` for a huge log file, ``iter_records`` for a rotation crossing
its read (files now taken one at a time, each from a listing of its own) and the daemon's
index for a rotation crossing a pass. Here the other files ``verify`` reads whole, the
other readers facing a huge file, and the cost of the new one-listing-per-file read are
attacked, each by someone who can write the log directory, on real files. A reader that
could take all the host's memory runs in a child with an address-space limit; a reader
that could run for minutes runs in a child with a time limit.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

from rlmbox.audit.log import AuditLog
from rlmbox.audit.reader import iter_records
from rlmbox.audit.verify import verify_log
from rlmbox.errors import AuditError

FILE_BYTES = 4000
NOTE = "x" * 200   # ~330-byte records: a rotation about every 12 records
ROOT = Path(__file__).resolve().parents[2]


def _a_log(logdir: Path, rotated: int = 2) -> int:
    """A real log with ``rotated`` rotated files and a current one; its record count."""
    n = 0
    with AuditLog(logdir, max_file_bytes=FILE_BYTES) as log:
        while len(list(logdir.glob("audit.0*.jsonl"))) < rotated or n % 3:
            log.append("host.call", tenant="a", session="s-a", n=n, note=NOTE)
            log.sync()
            n += 1
    return sum(1 for _ in iter_records(logdir))


def _outcome_of_verify(logdir: Path) -> str:
    try:
        report = verify_log(logdir)
    except AuditError as exc:
        return f"refused {exc}"
    except MemoryError:
        return "raised MemoryError"
    return f"report {report.ok} {report.kind}"


def _in_child(script: str, *, memory_bytes: int, timeout: float) -> str:
    """``script`` run by a child Python with an address-space limit; its last line of
    output, or ``timed out``."""
    prelude = textwrap.dedent(f"""\
        import resource
        resource.setrlimit(resource.RLIMIT_AS, ({memory_bytes}, {memory_bytes}))
        """)
    try:
        done = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(script)],
                              cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        return "timed out"
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[-1] if lines else f"no output, status {done.returncode}"


# --- verify: the files it reads besides the log files ------------------------------------

def test_a_huge_sparse_checkpoints_file_is_reported_not_raised(logdir: Path) -> None:
    _a_log(logdir)
    with (logdir / "checkpoints.jsonl").open("r+b") as planted:
        planted.truncate(1 << 40)   # sparse: no block is written
    outcome = _outcome_of_verify(logdir)
    assert outcome.startswith(("report False", "refused")), outcome


def test_a_huge_sparse_public_key_file_is_reported_not_raised(logdir: Path) -> None:
    _a_log(logdir)
    with (logdir / "audit.pub").open("r+b") as planted:
        planted.truncate(1 << 40)
    outcome = _outcome_of_verify(logdir)
    assert outcome.startswith(("report False", "refused")), outcome


def test_a_huge_sparse_current_file_is_reported_not_raised(logdir: Path) -> None:
    """Held: the fix of s13 covers the current file as well as a rotated one."""
    _a_log(logdir)
    with (logdir / "audit.jsonl").open("r+b") as planted:
        planted.truncate(1 << 40)
    outcome = _outcome_of_verify(logdir)
    assert outcome.startswith("report False malformed"), outcome


# --- iter_records (audit show / stats / view, the session viewer) -------------------------

def test_reading_records_past_a_huge_sparse_file_of_zeros_does_not_crash(
        logdir: Path) -> None:
    _a_log(logdir)
    planted = logdir / "audit.000002.jsonl"
    planted.write_bytes(b"")
    with planted.open("r+b") as handle:
        handle.truncate(1 << 40)   # zeros, no newline: a torn line 1 TiB long
    outcome = _in_child(f"""
        from pathlib import Path
        from rlmbox.audit.reader import iter_records
        from rlmbox.errors import AuditError
        try:
            print("records", sum(1 for _ in iter_records(Path({str(logdir)!r}))))
        except AuditError as exc:
            print("refused", exc)
        except MemoryError:
            print("raised MemoryError")
        """, memory_bytes=1 << 30, timeout=120)
    assert outcome.startswith(("records", "refused")), outcome


def test_reading_records_of_a_log_with_many_files_takes_time_in_line_with_verify(
        logdir: Path) -> None:
    records = _a_log(logdir)
    for index in range(100, 2600):   # empty rotated files: no record, the chain intact
        (logdir / f"audit.{index:06d}.jsonl").touch()
    started = time.monotonic()
    report = verify_log(logdir)
    verify_took = time.monotonic() - started
    assert report.ok, report
    started = time.monotonic()
    read = sum(1 for _ in iter_records(logdir))
    read_took = time.monotonic() - started
    assert read == records
    assert read_took < 2.0 + 20 * verify_took, (read_took, verify_took)


# --- the daemon's audit index -------------------------------------------------------------

def test_the_audit_index_reads_a_huge_newline_less_tail_in_bounded_time(
        logdir: Path) -> None:
    _a_log(logdir)
    with (logdir / "audit.jsonl").open("r+b") as planted:
        planted.truncate(1 << 30)   # zeros after the last record: a tail "being written"
    outcome = _in_child(f"""
        import time
        from pathlib import Path
        from rlmbox.daemon.audit_index import AuditIndex
        from rlmbox.errors import AuditError
        index = AuditIndex(Path({str(logdir)!r}))
        started = time.monotonic()
        try:
            index.refresh()
            index.refresh()   # the tail is read again: it is still not a record
            print("indexed", round(time.monotonic() - started, 1))
        except AuditError as exc:
            print("refused", exc)
        except MemoryError:
            print("raised MemoryError")
        """, memory_bytes=6 << 30, timeout=20)
    assert outcome.startswith(("indexed", "refused")), outcome


def test_the_audit_index_refuses_a_huge_sparse_rotated_file_or_reads_past_it(
        logdir: Path) -> None:
    """Held: a rotated file of zeros with no newline: the index's first pass reads the
    records before it, meets no complete line in it, and the next file's first record is
    a gap, so the index fails for good (64 MiB, in a child with a time limit: at 1 GiB
    its newline-less read is the quadratic one of the case above and never ends)."""
    _a_log(logdir, rotated=3)
    planted = logdir / "audit.000002.jsonl"
    planted.write_bytes(b"")
    with planted.open("r+b") as handle:
        handle.truncate(64 << 20)
    outcome = _in_child(f"""
        from pathlib import Path
        from rlmbox.daemon.audit_index import AuditIndex
        from rlmbox.errors import AuditError
        try:
            AuditIndex(Path({str(logdir)!r})).refresh()
            print("indexed")
        except AuditError as exc:
            print("refused", exc)
        except MemoryError:
            print("raised MemoryError")
        """, memory_bytes=4 << 30, timeout=60)
    assert outcome.startswith("refused"), outcome
    # a gap (the records between are missing), or, past MAX_LINE_BYTES, the line refused
    assert "missing" in outcome or "not an audit record" in outcome, outcome
