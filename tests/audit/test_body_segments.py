"""Bodies are appended to segment files: one fsync makes any number of them durable, and
verify still proves each body or names it missing or altered."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rlmbox.audit.bodies
import rlmbox.audit.writer
from rlmbox.audit.bodies import BodyStore
from rlmbox.audit.log import AuditLog
from rlmbox.audit.verify import verify_log


def _count_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    for module in (rlmbox.audit.bodies, rlmbox.audit.writer):
        monkeypatch.setattr(module.os, "fsync", counting)
    return calls


def test_a_batch_of_new_bodies_costs_one_fsync_besides_the_log(
        logdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A distinct cell (code, stdout, stderr, answer, all new) pays for its bodies once.
    The background commit is held off (a long interval), so only the sync's batch counts:
    on a loaded machine its due time could otherwise pass between the two appends."""
    with AuditLog(logdir, checkpoint_every=10_000, flush_interval_s=60.0) as log:
        log.append("warm", bodies={"first": "creates the segment file"})
        log.sync()
        calls = _count_fsyncs(monkeypatch)
        for cell in range(3):
            calls.clear()
            log.append("code.exec", cell=cell, bodies={"code": f"v{cell} = {cell}"})
            log.append("cell.result", cell=cell, bodies={
                "stdout": f"out {cell}", "stderr": f"err {cell}", "answer": f"{cell}"})
            log.sync()
            assert len(calls) <= 2, f"cell {cell}: {len(calls)} fsyncs"
    assert verify_log(logdir).ok


def test_segment_bodies_read_back_by_digest(logdir: Path) -> None:
    with AuditLog(logdir) as log:
        record = log.append("code.exec", bodies={"code": "print(1)", "blob": b"\x00\xff\n"})
    store = BodyStore(logdir / "bodies")
    assert store.read(record["code_sha256"]) == b"print(1)"
    assert store.read(record["blob_sha256"]) == b"\x00\xff\n"
    assert store.check(record["code_sha256"]) == "ok"
    assert store.read("0" * 64) is None
    assert "print(1)" not in (logdir / "audit.jsonl").read_text()


def test_a_body_altered_inside_its_segment_fails_verify(logdir: Path) -> None:
    with AuditLog(logdir) as log:
        log.append("a", bodies={"code": "print('before')"})
        record = log.append("b", bodies={"code": "print('honest')"})
    segment = _only_segment(logdir)
    data = segment.read_bytes()
    segment.write_bytes(data.replace(b"print('honest')", b"print('forged')"))
    report = verify_log(logdir)
    assert (report.kind, report.first_bad_seq) == ("bad_body", record["seq"])


def test_an_erased_segment_body_is_missing_and_the_chain_verifies(logdir: Path) -> None:
    with AuditLog(logdir) as log:
        kept = log.append("a", bodies={"code": "print('kept')"})
        erased = log.append("b", bodies={"code": "print('personal data')"})
    BodyStore(logdir / "bodies").erase(erased["code_sha256"])
    assert b"personal data" not in _only_segment(logdir).read_bytes()
    report = verify_log(logdir)
    assert report.ok, report.reason
    assert [(m.seq, m.sha256) for m in report.missing_bodies] == [
        (erased["seq"], erased["code_sha256"])]
    assert BodyStore(logdir / "bodies").read(kept["code_sha256"]) == b"print('kept')"


def test_a_segment_cut_short_reports_the_lost_bodies_missing(logdir: Path) -> None:
    with AuditLog(logdir) as log:
        first = log.append("a", bodies={"code": "print('first')"})
        last = log.append("b", bodies={"code": "print('last')"})
    segment = _only_segment(logdir)
    segment.write_bytes(segment.read_bytes()[:-5])
    report = verify_log(logdir)
    assert report.ok, report.reason
    assert [m.seq for m in report.missing_bodies] == [last["seq"]]
    assert BodyStore(logdir / "bodies").read(first["code_sha256"]) == b"print('first')"


def test_a_torn_segment_tail_is_repaired_and_audited_on_reopen(logdir: Path) -> None:
    """A crash in the middle of a body write leaves a partial entry; nothing names it yet."""
    with AuditLog(logdir) as log:
        log.append("a", bodies={"code": "print('a')"})
    segment = _only_segment(logdir)
    with segment.open("ab") as handle:
        handle.write(b"RLMBODY1 partial entry cut by a crash")
    with AuditLog(logdir) as log:
        later = log.append("b", bodies={"code": "print('after the crash')"})
    assert BodyStore(logdir / "bodies").read(later["code_sha256"]) == b"print('after the crash')"
    report = verify_log(logdir)
    assert report.ok, report.reason
    assert report.missing_bodies == []
    repairs = [line for line in (logdir / "audit.jsonl").read_text().splitlines()
               if '"event":"audit.repair"' in line]
    assert len(repairs) == 1
    assert segment.name in repairs[0]


def test_bodies_in_the_older_one_file_per_body_layout_still_verify(logdir: Path) -> None:
    """Logs written before segments keep their ``bodies/<aa>/<sha256>`` files."""
    with AuditLog(logdir) as log:
        record = log.append("a", bodies={"code": "print('old layout')"})
    digest = record["code_sha256"]
    store = BodyStore(logdir / "bodies")
    data = store.read(digest)
    assert data is not None
    store.erase(digest)
    legacy = logdir / "bodies" / digest[:2] / digest
    legacy.parent.mkdir()
    legacy.write_bytes(data)
    assert BodyStore(logdir / "bodies").read(digest) == b"print('old layout')"
    assert verify_log(logdir).missing_bodies == []
    legacy.write_bytes(b"print('forged')")
    assert verify_log(logdir).kind == "bad_body"


def _only_segment(logdir: Path) -> Path:
    [segment] = sorted((logdir / "bodies").glob("segment-*"))
    return segment


def test_a_body_that_holds_a_forged_entry_header_stays_one_body(logdir: Path) -> None:
    """Sandbox output shaped like a segment entry is data: entries are framed by length."""
    forged = b"print('planted')"
    planted = (b"RLMBODY1 " + hashlib.sha256(forged).hexdigest().encode()
               + b" %020d L\n" % len(forged) + forged + b"\n")
    with AuditLog(logdir) as log:
        record = log.append("cell.result", bodies={"stdout": b"before\n" + planted + b"after"})
    store = BodyStore(logdir / "bodies")
    assert store.read(hashlib.sha256(forged).hexdigest()) is None
    assert store.read(record["stdout_sha256"]) == b"before\n" + planted + b"after"
    assert verify_log(logdir).ok


def test_a_full_segment_is_followed_by_a_new_one_and_both_are_read(tmp_path: Path) -> None:
    store = BodyStore(tmp_path, max_segment_bytes=200)
    assert store.open_for_append() is None
    bodies = [f"body number {i} ".encode() * 8 for i in range(4)]
    digests = [hashlib.sha256(body).hexdigest() for body in bodies]
    for digest, body in zip(digests, bodies, strict=True):
        store.write_durably({digest: body})
    store.close()
    assert len(sorted(tmp_path.glob("segment-*"))) >= 2
    reader = BodyStore(tmp_path)
    assert [reader.read(digest) for digest in digests] == bodies


_EMPTY_ENTRY = b"RLMBODY1 " + b"f" * 64 + b" " + b"0" * 20 + b" L\n\n"
_ENTRY_PIECES = [b"RLMBODY1 ", b"a" * 64, b" ", b"%020d" % 3, b"%020d" % 10**19, b" L\n",
                 b" E\n", b"abc", b"\n", b"\x00", _EMPTY_ENTRY]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_ENTRY_PIECES) | st.binary(max_size=40), max_size=12).map(b"".join))
def test_any_segment_bytes_read_as_bodies_that_match_or_as_missing(segment: bytes) -> None:
    """A garbled segment never makes a read or a reopen raise, a body is ``ok`` only if it
    hashes to its digest, and a writer opened on it still stores new bodies readably."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "segment-000001.bin").write_bytes(segment)
        store = BodyStore(root)
        for digest in ("a" * 64, "f" * 64, hashlib.sha256(b"").hexdigest()):
            assert store.check(digest) in ("ok", "missing", "corrupt")
        writer = BodyStore(root)
        writer.open_for_append()
        writer.write_durably({hashlib.sha256(b"new").hexdigest(): b"new"})
        writer.close()
        assert BodyStore(root).read(hashlib.sha256(b"new").hexdigest()) == b"new"


def test_a_damaged_segment_is_left_for_verify_and_new_bodies_go_to_a_new_one(
        logdir: Path) -> None:
    """Reopening the log never cuts bodies a damaged header hides (evidence stays on disk)."""
    with AuditLog(logdir) as log:
        first = log.append("a", bodies={"code": "print('first')"})
        log.sync()
        log.append("b", bodies={"code": "print('second')"})
    segment = _only_segment(logdir)
    damaged = segment.read_bytes().replace(b"RLMBODY1 ", b"RLMBODYX ", 1)
    segment.write_bytes(damaged)
    with AuditLog(logdir) as log:
        later = log.append("c", bodies={"code": "print('later')"})
    assert segment.read_bytes() == damaged
    assert BodyStore(logdir / "bodies").read(later["code_sha256"]) == b"print('later')"
    report = verify_log(logdir)
    assert first["seq"] in [m.seq for m in report.missing_bodies]
    assert later["seq"] not in [m.seq for m in report.missing_bodies]


def test_a_recurring_body_costs_no_file_open(logdir: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer checks a stored body's header through a descriptor it keeps, not an
    open() per record: the same cell run again opens nothing (issue 16's distinct and
    trivial cells paid one open per body)."""
    opened: list[str] = []
    real = os.open

    def counting(path: object, *args: object, **kwargs: object) -> int:
        opened.append(str(path))
        return real(path, *args, **kwargs)   # type: ignore[arg-type]

    with AuditLog(logdir) as log:
        log.append("a", bodies={"code": "x = 1"})
        log.sync()
        log.append("b", bodies={"code": "x = 1"})
        log.sync()
        monkeypatch.setattr(os, "open", counting)
        for _ in range(5):
            log.append("c", bodies={"code": "x = 1"})
            log.sync()
        monkeypatch.undo()
    assert opened == []


def test_a_segment_deleted_while_the_log_is_open_gets_its_bodies_again(logdir: Path) -> None:
    """A descriptor kept on a segment an operator removed still reads its old header; the
    writer must see the file is gone (no link left) and store the body anew, or the new
    record would name a body nobody can read."""
    with AuditLog(logdir) as log:
        first = log.append("a", bodies={"code": "print('kept?')"})
        log.sync()
        log.append("b", bodies={"code": "print('kept?')"})   # the writer now knows it
        log.sync()
        _only_segment(logdir).unlink()
        assert BodyStore(logdir / "bodies").read(first["code_sha256"]) is None
        log.append("c", bodies={"code": "print('kept?')"})
    assert BodyStore(logdir / "bodies").read(first["code_sha256"]) == b"print('kept?')"


def test_the_writer_keeps_a_bounded_number_of_segment_descriptors(tmp_path: Path) -> None:
    """Bodies spread over many segments do not pile up open descriptors."""
    root = tmp_path / "bodies"
    root.mkdir()
    store = BodyStore(root, max_segment_bytes=1)   # a new segment for every batch
    store.open_for_append()
    before = len(os.listdir("/proc/self/fd"))
    digests = []
    for i in range(200):
        data = f"body {i}".encode()
        digest = hashlib.sha256(data).hexdigest()
        store.write_durably({digest: data})
        store.write_durably({digest: data})   # checked through a kept descriptor
        digests.append(digest)
    assert len(os.listdir("/proc/self/fd")) - before <= 20
    store.close()
    assert len(os.listdir("/proc/self/fd")) <= before
    assert all(BodyStore(root).read(d) is not None for d in digests)
