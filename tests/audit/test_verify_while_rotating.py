"""``verify`` on a live log that rotates as it reads gives a true answer.

Verify lists the log's files, then reads them. A rotation in between (the current file
renamed to the next rotated name, a new current file made) made it raise
``FileNotFoundError`` (the current file gone for a moment) or read the new current file
without the one just rotated, and report the chain broken: a log that was whole, reported
tampered. Now a read whose listing changed meanwhile is done again.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from rlmbox.audit.log import AuditLog
from rlmbox.audit.verify import verify_log


def test_verifying_a_log_that_rotates_throughout_is_always_ok(logdir: Path) -> None:
    stop = threading.Event()
    with AuditLog(logdir, max_file_bytes=4000, checkpoint_every=7) as log:

        def write() -> None:
            n = 0
            while not stop.is_set():
                log.append("host.call", n=n, note="x" * 200)
                log.sync()   # each sync a write; a rotation about every 15 records
                n += 1
                stop.wait(0.002)   # a rotation about every 40 ms: a verify reads in less

        writer = threading.Thread(target=write)
        writer.start()
        outcomes: list[str] = []
        try:
            deadline = time.monotonic() + 60
            while _rotations(logdir) < 40 and time.monotonic() < deadline:
                try:
                    report = verify_log(logdir)
                except Exception as exc:
                    outcomes.append(f"raised {type(exc).__name__}: {exc}")
                    continue
                if not report.ok:
                    outcomes.append(f"{report.kind}: {report.reason}")
        finally:
            stop.set()
            writer.join()
    assert _rotations(logdir) >= 40   # it did rotate, many times, under verify
    assert outcomes == []
    assert verify_log(logdir).ok


def _rotations(logdir: Path) -> int:
    return len(list(logdir.glob("audit.*.jsonl")))
