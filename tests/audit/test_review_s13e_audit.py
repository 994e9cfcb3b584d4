"""Hostile review s13e of the audit index's line reader (9b454f7: ``_complete_lines`` reads
with ``readline(MAX_LINE_BYTES + 1)``), against audit-format.md Promises 6 and 8 and
daemon.md (``GET /v1/audit``, the per-tenant audit quota): the index never accepts a
non-record nor a line over 32 MiB, never fails for good on a whole log (a tail being
written, a rotation), and counts each tenant's bytes once across refreshes and rotations.
Attacks are on real files written by ``AuditLog`` and by a hand that can write the log
directory.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rlmbox.audit.files import MAX_LINE_BYTES, log_files
from rlmbox.audit.log import AuditLog
from rlmbox.audit.reader import iter_records
from rlmbox.daemon.audit_index import AuditIndex
from rlmbox.errors import AuditError

FILE_BYTES = 4000
NOTE = "x" * 200
ROOT = Path(__file__).resolve().parents[2]


def _a_log(logdir: Path, rotated: int = 0, records: int = 3) -> int:
    """A real log (``rotated`` rotated files, at least ``records`` records); its last seq."""
    n = 0
    with AuditLog(logdir, max_file_bytes=FILE_BYTES) as log:
        while len(list(logdir.glob("audit.0*.jsonl"))) < rotated or n < records:
            log.append("host.call", tenant="a", session="s-a", n=n, note=NOTE)
            log.sync()
            n += 1
    seqs: list[int] = [r["seq"] for r in iter_records(logdir)
                       if isinstance(r.get("seq"), int)]
    return seqs[-1]


def _line_of(size: int, seq: int, *, newline: bool = True) -> bytes:
    """A record line of exactly ``size`` bytes (its newline counted when it has one)."""
    head = json.dumps({"seq": seq, "tenant": "a", "event": "host.call",
                       "note": ""}).encode()[:-2]   # ends in '"note": "'
    tail = b'"}\n' if newline else b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def _append(logdir: Path, data: bytes) -> None:
    with (logdir / "audit.jsonl").open("ab") as handle:
        handle.write(data)


# --- the 32 MiB boundary ------------------------------------------------------------------

def test_a_line_one_byte_over_32_mib_with_its_newline_is_refused_by_the_index(
        logdir: Path) -> None:
    """Not new in 9b454f7: the chunked reader before it measured only a tail without a
    newline too, and accepted lines up to about a chunk (1 MiB) over the limit."""
    last = _a_log(logdir)
    _append(logdir, _line_of(MAX_LINE_BYTES + 1, last + 1))
    with pytest.raises(AuditError, match="over"):
        list(iter_records(logdir))   # the reader refuses it (held)
    index = AuditIndex(logdir)
    with pytest.raises(AuditError, match="over"):
        index.refresh()


def test_a_line_of_exactly_32_mib_is_indexed_and_counted_once(logdir: Path) -> None:
    last = _a_log(logdir)
    index = AuditIndex(logdir)
    index.refresh()
    before = index.tenant_bytes("a")
    _append(logdir, _line_of(MAX_LINE_BYTES, last + 1))
    assert list(iter_records(logdir))[-1]["seq"] == last + 1   # the reader takes it
    index.refresh()
    index.refresh()
    assert index.tenant_bytes("a") == before + MAX_LINE_BYTES
    records, more = index.page("a", session=None, after_seq=last, limit=5)
    assert [r["seq"] for r in records] == [last + 1]
    assert not more


def test_a_newline_less_tail_one_byte_over_32_mib_is_refused_naming_its_byte(
        logdir: Path) -> None:
    _a_log(logdir)
    at = (logdir / "audit.jsonl").stat().st_size
    _append(logdir, b"x" * (MAX_LINE_BYTES + 1))
    with pytest.raises(AuditError, match=f"at byte {at}: a line over"):
        AuditIndex(logdir).refresh()


def test_a_newline_less_tail_just_under_32_mib_waits_then_counts_once(logdir: Path) -> None:
    """A tail of a record of MAX_LINE_BYTES bytes, its newline not yet written: not refused,
    not counted; once the newline comes it is indexed and counted once."""
    last = _a_log(logdir)
    index = AuditIndex(logdir)
    index.refresh()
    before, read_before = index.tenant_bytes("a"), index.bytes_read
    _append(logdir, _line_of(MAX_LINE_BYTES, last + 1)[:-1])
    index.refresh()
    index.refresh()
    assert index.tenant_bytes("a") == before
    assert index.bytes_read == read_before   # a tail read is not a record read
    _append(logdir, b"\n")
    index.refresh()
    index.refresh()
    assert index.tenant_bytes("a") == before + MAX_LINE_BYTES
    assert index.bytes_read == read_before + MAX_LINE_BYTES


# --- a tail being written, across refreshes and rotations -------------------------------

@pytest.mark.parametrize("refresh_before_rotation", [True, False])
@pytest.mark.parametrize("chunk", [1, 97, 4096])
def test_a_log_replayed_a_few_bytes_at_a_time_through_rotations_is_indexed_once(
        tmp_path: Path, chunk: int, refresh_before_rotation: bool) -> None:
    """Each file of a real log (two rotations) is written into a second directory's
    current file ``chunk`` bytes at a time, rotated by rename as the writer does, with a
    refresh after each write (and, or not, before the rename: the last of a file's tail
    is then first seen complete under its rotated name): every record is indexed once and
    each byte counted once."""
    source = tmp_path / "source"
    _a_log(source, rotated=2)
    whole = AuditIndex(source)
    whole.refresh()
    files = log_files(source)
    total = sum(p.stat().st_size for p in files)
    live = tmp_path / "live"
    live.mkdir()
    index = AuditIndex(live)
    for path in files:
        data = path.read_bytes()
        step = chunk if chunk > 1 else 1
        for start in range(0, len(data), step):
            if chunk == 1 and start % 7:   # a byte at a time, refreshed every 7th
                _append(live, data[start:start + 1])
                continue
            _append(live, data[start:start + step])
            if refresh_before_rotation or start + step < len(data):
                index.refresh()
        if path.name != "audit.jsonl":
            (live / "audit.jsonl").rename(live / path.name)
            index.refresh()
    index.refresh()
    assert index.bytes_read == total
    assert index.tenant_bytes("a") == whole.tenant_bytes("a")
    got, more = index.page("a", session="s-a", after_seq=-1, limit=10_000)
    want, _ = whole.page("a", session="s-a", after_seq=-1, limit=10_000)
    assert got == want
    assert not more


def test_a_torn_tail_cut_by_a_restarted_writer_is_never_indexed(logdir: Path) -> None:
    """A crash leaves half a record; the index leaves it; the restarted writer cuts it and
    appends: the chain goes on, the half is never counted."""
    last = _a_log(logdir)
    half = _line_of(500, last + 1)[:250]
    _append(logdir, half)
    index = AuditIndex(logdir)
    index.refresh()
    before = index.tenant_bytes("a")
    with AuditLog(logdir, max_file_bytes=FILE_BYTES) as log:
        log.append("host.call", tenant="a", session="s-a", n=99, note=NOTE)
        log.sync()
    index.refresh()
    on_disk = sum(p.stat().st_size for p in log_files(logdir))
    assert index.bytes_read == on_disk
    fresh = AuditIndex(logdir)
    fresh.refresh()
    assert index.tenant_bytes("a") == fresh.tenant_bytes("a") > before


def test_a_complete_line_that_is_no_record_after_a_waited_tail_fails_the_index(
        logdir: Path) -> None:
    """A tail waited on, then completed as a non-record: refused, not skipped."""
    _a_log(logdir)
    index = AuditIndex(logdir)
    index.refresh()
    _append(logdir, b'{"seq": "no')
    index.refresh()
    _append(logdir, b'"}\n')
    with pytest.raises(AuditError, match="not an audit record"):
        index.refresh()
    with pytest.raises(AuditError):
        index.page("a", session=None, after_seq=-1, limit=1)


# --- bounded time and memory ---------------------------------------------------------------

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


def test_a_sparse_1_tib_rotated_file_is_refused_in_bounded_time_and_memory(
        logdir: Path) -> None:
    """At 1 TiB, not the 64 MiB s13b could afford before the line reader was bounded."""
    _a_log(logdir, rotated=3)
    planted = logdir / "audit.000002.jsonl"
    planted.write_bytes(b"")
    with planted.open("r+b") as handle:
        handle.truncate(1 << 40)
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
        """, memory_bytes=1 << 30, timeout=30)
    assert outcome.startswith("refused"), outcome
    assert "a line over" in outcome, outcome


def test_refreshes_waiting_on_a_tail_just_under_32_mib_stay_bounded(logdir: Path) -> None:
    """Each ``GET /v1/audit`` refreshes: a tail waited on is read again each time, at most
    32 MiB, in a child with a memory limit and a time limit for 20 refreshes."""
    last = _a_log(logdir)
    _append(logdir, _line_of(MAX_LINE_BYTES, last + 1)[:-1])
    outcome = _in_child(f"""
        from pathlib import Path
        from rlmbox.daemon.audit_index import AuditIndex
        index = AuditIndex(Path({str(logdir)!r}))
        for _ in range(20):
            index.refresh()
        print("waited", index.tenant_bytes("a") > 0)
        """, memory_bytes=1 << 30, timeout=60)
    assert outcome == "waited True", outcome
