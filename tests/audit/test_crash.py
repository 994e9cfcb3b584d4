"""Crash safety: torn final lines are tolerated by verify, repaired and reported on open."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlmbox.audit.log import AuditLog
from rlmbox.audit.reader import iter_records
from rlmbox.audit.verify import verify_log

WRITER = Path(__file__).with_name("crash_writer.py")
ROOT = Path(__file__).resolve().parents[2]


def test_a_torn_final_line_verifies_then_is_repaired_and_reported(logdir: Path) -> None:
    with AuditLog(logdir) as log:
        for i in range(5):
            log.append("e", n=i)
    with (logdir / "audit.jsonl").open("ab") as handle:
        handle.write(b'{"depth":0,"event":"half-writ')
    before = verify_log(logdir)
    assert before.ok
    assert before.torn_tail_bytes == 29
    with AuditLog(logdir) as log:
        log.append("after")
    after = verify_log(logdir)
    assert after.ok
    assert after.torn_tail_bytes == 0
    repairs = [r for r in iter_records(logdir) if r["event"] == "audit.repair"]
    assert len(repairs) == 1
    assert repairs[0]["dropped_bytes"] == 29
    assert repairs[0]["seq"] == 6
    assert repairs[0]["severity"] == "WARN"


def test_a_torn_checkpoint_line_is_repaired(logdir: Path) -> None:
    with AuditLog(logdir) as log:
        log.append("e")
    with (logdir / "checkpoints.jsonl").open("ab") as handle:
        handle.write(b'{"alg":"ed')
    assert verify_log(logdir).ok
    with AuditLog(logdir) as log:
        log.append("after")
    report = verify_log(logdir)
    assert report.ok
    assert report.warnings == []


@pytest.mark.slow
def test_kill_9_in_a_loop_loses_no_acknowledged_event(logdir: Path) -> None:
    """20 writers killed at random moments: every acknowledged seq survives, the log verifies."""
    rng = random.Random(1234)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    torn = 0
    for round_ in range(20):
        child = subprocess.Popen([sys.executable, str(WRITER), str(logdir), str(round_)],
                                 stdout=subprocess.PIPE, env=env)
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == b"ready\n"
            time.sleep(rng.uniform(0.0, 0.3))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
        assert child.stdout is not None
        acked = [int(x) for x in child.stdout.read().split()]
        child.stdout.close()
        report = verify_log(logdir)
        assert report.ok, report.reason
        if acked:
            assert report.last_seq >= acked[-1]
        torn += report.torn_tail_bytes > 0
    with AuditLog(logdir) as log:
        log.append("done")
    final = verify_log(logdir)
    assert final.ok, final.reason
    assert final.torn_tail_bytes == 0
    repairs = [r for r in iter_records(logdir) if r["event"] == "audit.repair"]
    # Every torn tail seen after a kill was reported by the next open.
    assert len([r for r in repairs if r["file"] == "audit.jsonl"]) >= torn
