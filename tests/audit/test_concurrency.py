"""Many threads appending: one gapless chain, group-committed."""

from __future__ import annotations

import threading
from pathlib import Path

from rlmbox.audit.log import AuditLog
from rlmbox.audit.reader import iter_records
from rlmbox.audit.verify import verify_log


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
