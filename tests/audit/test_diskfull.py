"""Fail closed: on a full disk the log raises AuditWriteError and keeps raising."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlmbox.audit.log import AuditLog
from rlmbox.audit.verify import verify_log
from rlmbox.errors import AuditWriteError


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (needs root); unmounted whatever happens."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mountpoint)],
                            capture_output=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"cannot mount tmpfs: {result.stderr.decode().strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=True)


def _fill(path: Path) -> None:
    with path.open("wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass  # ENOSPC: the disk is full now


def _append_until_failure(log: AuditLog) -> None:
    for i in range(10_000):
        log.append("cell.result", n=i, output="y" * 4096)
        log.sync()
    raise AssertionError("10,000 events of 4 KiB fitted on a 1 MiB disk")


def test_disk_full_fails_closed_and_stays_failed_after_space_returns(small_disk: Path) -> None:
    logdir = small_disk / "audit"
    log = AuditLog(logdir)
    acknowledged = log.append("session.create", session="s")
    log.sync()
    filler = small_disk / "filler"
    _fill(filler)
    with pytest.raises(AuditWriteError):
        _append_until_failure(log)
    filler.unlink()  # space is back, but the failure is final: nothing is retried
    with pytest.raises(AuditWriteError):
        log.append("host.call", function="llm_query")
    with pytest.raises(AuditWriteError):
        log.sync()
    with pytest.raises(AuditWriteError):
        log.close()
    log.close()  # a second close is a no-op
    report = verify_log(logdir)  # the acknowledged event is on disk; the chain verifies
    assert report.ok, report.reason
    assert report.last_seq >= acknowledged["seq"]


def test_filling_the_disk_with_events_fails_closed(small_disk: Path) -> None:
    log = AuditLog(small_disk / "audit")
    with pytest.raises(AuditWriteError):
        _append_until_failure(log)
    acknowledged = log.durable_seq
    assert acknowledged > 0
    with pytest.raises(AuditWriteError):
        log.append("host.call")
    with pytest.raises(AuditWriteError):
        log.close()
    report = verify_log(small_disk / "audit")
    assert report.ok, report.reason
    assert report.last_seq >= acknowledged


def test_a_body_that_does_not_fit_fails_closed(small_disk: Path) -> None:
    log = AuditLog(small_disk / "audit")
    log.append("code.exec", bodies={"code": os.urandom(2 * 1024 * 1024)})
    with pytest.raises(AuditWriteError):
        log.sync()
    with pytest.raises(AuditWriteError):
        log.append("code.exec", bodies={"code": "print(1)"})
    with pytest.raises(AuditWriteError):
        log.close()
