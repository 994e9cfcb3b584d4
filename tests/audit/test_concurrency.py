"""Many threads appending: one gapless chain, group-committed."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from rlmbox.audit.files import CURRENT
from rlmbox.audit.log import AuditLog
from rlmbox.audit.reader import iter_records
from rlmbox.audit.verify import verify_log
from rlmbox.errors import AuditWriteError


def test_four_threads_make_one_gapless_verifiable_chain(logdir: Path) -> None:
    log = AuditLog(logdir, checkpoint_every=100, max_file_bytes=64 * 1024)
    seqs: list[int] = []
    lock = threading.Lock()

    def work(worker: int) -> None:
        for i in range(500):
            record = log.append("host.call", session=f"s{worker}", n=i)
            if i % 50 == 0:
                log.sync()
            with lock:
                seqs.append(int(record["seq"]))

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    assert sorted(seqs) == list(range(1, 2001))
    report = verify_log(logdir)
    assert report.ok, report.reason
    assert report.events == 2000
    assert len(report.files) > 1  # rotation happened and the chain ran across files
    assert report.checkpoints >= 2
    per_session = [r["n"] for r in iter_records(logdir) if r["session"] == "s2"]
    assert per_session == list(range(500))  # each thread's events keep their order


def test_rotated_files_are_linked(logdir: Path) -> None:
    with AuditLog(logdir, max_file_bytes=1000) as log:
        for i in range(30):
            log.append("e", n=i)
            log.sync()
    report = verify_log(logdir)
    assert report.ok
    assert report.files[-1] == "audit.jsonl"
    assert report.files[0] == "audit.000001.jsonl"
    assert all(p.stat().st_size <= 1000 for p in logdir.glob("audit*.jsonl"))


def test_every_sync_returns_with_its_record_on_disk_while_others_commit(logdir: Path) -> None:
    """Syncs race each other and the background thread for the commit; none returns
    before its own record is written (fsync ordering itself: test_crash)."""
    log = AuditLog(logdir, checkpoint_every=50, flush_interval_s=0.0005)
    late: list[int] = []

    def work(worker: int) -> None:
        for i in range(150):
            seq = int(log.append("host.call", session=f"s{worker}", n=i)["seq"])
            log.sync()
            if log.durable_seq < seq or f'"seq":{seq},'.encode() not in log.path.read_bytes():
                late.append(seq)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    assert late == []
    report = verify_log(logdir)
    assert report.ok, report.reason
    assert report.events == 600


def test_a_sync_with_no_commit_under_way_commits_on_its_own_thread(
        logdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No hand-off to the background thread and back: the caller fsyncs the log itself."""
    fsync_threads: list[str] = []
    real = os.fsync

    def recording(fd: int) -> None:
        fsync_threads.append(threading.current_thread().name)
        real(fd)

    with AuditLog(logdir, flush_interval_s=60.0) as log:
        monkeypatch.setattr(os, "fsync", recording)
        log.append("code.exec", n=1)
        log.sync()
        assert fsync_threads == [threading.current_thread().name]
        monkeypatch.undo()


def test_syncs_sooner_than_the_flush_interval_leave_the_background_writer_idle(
        logdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A record's background deadline runs from when it was queued: a caller's sync that
    committed it first leaves the writer nothing due, so it adds no fsync of its own
    (before, it fsynced every interval and a caller's sync could queue behind it)."""
    fsync_threads: list[str] = []
    real = os.fsync

    def recording(fd: int) -> None:
        fsync_threads.append(threading.current_thread().name)
        real(fd)

    with AuditLog(logdir, flush_interval_s=0.05, checkpoint_every=10**6) as log:
        monkeypatch.setattr(os, "fsync", recording)
        for i in range(20):   # an outcome record, then the next call's synced start record
            log.append("host.call", n=i)
            time.sleep(0.01)
            log.append("host.call.start", n=i)
            log.sync()
        assert "rlmbox-audit-writer" not in fsync_threads
        log.append("host.call", n=20)   # nobody syncs it: the writer does, within the interval
        deadline = time.monotonic() + 5
        while log.durable_seq < 41 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert log.durable_seq == 41
        assert fsync_threads[-1] == "rlmbox-audit-writer"
        monkeypatch.undo()


class _CountingCondition(threading.Condition):
    """Counts the waits that returned on the background writer's thread."""

    writer_wakeups = 0

    def wait(self, timeout: float | None = None) -> bool:
        woken = super().wait(timeout)
        if threading.current_thread().name == "rlmbox-audit-writer":
            _CountingCondition.writer_wakeups += 1
        return woken


def test_a_caller_that_syncs_its_own_records_does_not_wake_the_writer_each_time(
        logdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Durable cells sync every cell on the caller's thread: the background writer stays
    asleep rather than waking twice a cell (queue filled, batch committed) to find nothing
    due; each wake-up was a thread hand-off on the cell's path."""
    monkeypatch.setattr(threading, "Condition", _CountingCondition)
    _CountingCondition.writer_wakeups = 0
    with AuditLog(logdir, flush_interval_s=60.0) as log:
        for i in range(50):   # a cell's two records, then the cell's sync
            log.append("code.exec", n=i)
            log.append("cell.result", n=i)
            log.sync()
        assert log.durable_seq == 100
        assert _CountingCondition.writer_wakeups <= 2


class _CountingNotified(threading.Condition):
    """Counts the waits on the background writer's thread that a notify ended."""

    notified = 0

    def wait(self, timeout: float | None = None) -> bool:
        woken = super().wait(timeout)
        if woken and threading.current_thread().name == "rlmbox-audit-writer":
            _CountingNotified.notified += 1
        return woken


def test_a_busy_caller_that_syncs_its_own_records_never_has_the_writer_notified(
        logdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Host calls sync their start records every few hundred µs, over many intervals: the
    writer stays armed while records keep coming rather than park and be notified by the
    next append (each notify was a thread hand-off on a host call's path)."""
    monkeypatch.setattr(threading, "Condition", _CountingNotified)
    _CountingNotified.notified = 0
    with AuditLog(logdir, flush_interval_s=0.01) as log:
        log.append("session.create")
        log.sync()
        time.sleep(0.002)
        _CountingNotified.notified = 0
        until = time.monotonic() + 0.3
        n = 0
        while time.monotonic() < until:   # thirty intervals of calls
            log.append("host.call", n=n)
            log.append("host.call.start", n=n)
            log.sync()
            time.sleep(0.0005)
            n += 1
        assert _CountingNotified.notified == 0
        queued = time.monotonic()
        log.append("host.call", n=n)   # the last outcome, never synced: the writer's
        while log.durable_seq < 2 * n + 2 and time.monotonic() - queued < 5:
            time.sleep(0.002)
        assert log.durable_seq == 2 * n + 2
        assert time.monotonic() - queued < 0.01 + 0.15


def test_a_record_queued_while_the_writer_sleeps_to_an_earlier_due_time_is_still_committed(
        logdir: Path) -> None:
    """The writer is not woken when a caller refills the queue after committing the batch
    first; the record queued then must still be durable within its own interval."""
    interval = 0.2
    with AuditLog(logdir, flush_interval_s=interval, checkpoint_every=10**6) as log:
        log.append("code.exec", n=1)
        time.sleep(0.02)   # the writer wakes from its park and sleeps to this batch's due
        log.sync()         # the caller commits first
        time.sleep(interval / 2)
        log.append("host.call", n=2)   # queued with nobody notified, never synced
        queued = time.monotonic()
        while log.durable_seq < 2 and time.monotonic() - queued < 5:
            time.sleep(0.002)
        assert log.durable_seq == 2
        assert time.monotonic() - queued < interval + 0.15


def test_a_record_queued_during_a_failed_commit_is_never_written(logdir: Path) -> None:
    """A caller's commit fails (fsync error) while another record is queued: the log is
    failed for good, so that record, chained after a batch that never became durable,
    must not reach the file later from the background thread (fail closed, no gap)."""
    log = AuditLog(logdir, flush_interval_s=0.01)
    writer = log._writer
    real_commit = writer._commit

    def failing_commit(*args: object, **kwargs: object) -> None:
        log.append("queued.during.failure")   # the writer's lock is released meanwhile
        raise OSError(5, "injected fsync failure")

    writer._commit = failing_commit  # type: ignore[method-assign]
    log.append("first")
    with pytest.raises(AuditWriteError):
        log.sync()
    writer._commit = real_commit  # type: ignore[method-assign]
    time.sleep(0.2)   # twenty flush intervals: the background thread had every chance
    with pytest.raises(AuditWriteError):
        log.close()
    assert b"queued.during.failure" not in (logdir / CURRENT).read_bytes()
