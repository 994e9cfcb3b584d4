"""Something that is not a regular file under a log file's name (a FIFO, a directory, a
socket, a symlink) is refused with a clear error naming it, never read or waited on:
``verify`` reports it as damage and opening the log raises ``AuditError``. Each call runs
with a deadline (``odd_file_helpers``): a test fails, rather than hangs, when the refusal
is missing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rlmbox.audit.bodies import BodyStore
from rlmbox.audit.log import AuditLog
from rlmbox.audit.reader import iter_records
from rlmbox.audit.verify import verify_log
from rlmbox.errors import AuditError, AuditWriteError

from .odd_file_helpers import KINDS, plant, within_deadline


def _build(logdir: Path, *, with_body: bool = True) -> str:
    """A closed log with a rotated file, checkpoints and (by default) one body in a
    segment; returns the body's digest (or "")."""
    with AuditLog(logdir, checkpoint_every=1, max_file_bytes=700) as log:
        digest = ""
        if with_body:
            digest = log.append("code.exec", bodies={"code": "x = 1"})["code_sha256"]
        for number in range(6):
            log.append("note", number=number)
    assert (logdir / "audit.000001.jsonl").exists(), "the log did not rotate"
    assert verify_log(logdir).ok
    return digest


def _open(logdir: Path) -> Callable[[], Any]:
    def opened() -> Any:
        log = AuditLog(logdir)
        log.close()
        return log
    return opened


def _assert_refused(value: Any, name: str) -> None:
    assert isinstance(value, AuditError), f"expected AuditError, got {value!r}"
    assert name in str(value), str(value)


# -- the log files: verify reports them, opening refuses them -----------------------------

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", ["audit.jsonl", "audit.000001.jsonl", "checkpoints.jsonl"])
def test_verify_reports_an_odd_log_file_as_malformed(tmp_path: Path, name: str,
                                                     kind: str) -> None:
    logdir = tmp_path / "audit"
    _build(logdir)
    plant(kind, logdir / name, tmp_path)
    report = within_deadline(lambda: verify_log(logdir), tmp_path)
    assert not isinstance(report, BaseException), f"verify raised {report!r}"
    assert not report.ok
    assert report.kind == "malformed"
    assert name in report.reason, report.reason


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", ["audit.jsonl", "checkpoints.jsonl", ".lock", "audit.key",
                                  "audit.pub"])
def test_opening_a_log_with_an_odd_file_raises_audit_error_naming_it(
        tmp_path: Path, name: str, kind: str) -> None:
    logdir = tmp_path / "audit"
    _build(logdir)
    plant(kind, logdir / name, tmp_path)
    _assert_refused(within_deadline(_open(logdir), tmp_path), name)


@pytest.mark.parametrize("kind", KINDS)
def test_opening_a_log_whose_current_file_is_empty_refuses_an_odd_rotated_file(
        tmp_path: Path, kind: str) -> None:
    """With nothing in ``audit.jsonl`` the head is read from the newest rotated file."""
    logdir = tmp_path / "audit"
    _build(logdir)
    (logdir / "audit.jsonl").write_bytes(b"")
    newest = sorted(logdir.glob("audit.0*.jsonl"))[-1]
    plant(kind, newest, tmp_path)
    _assert_refused(within_deadline(_open(logdir), tmp_path), newest.name)


@pytest.mark.parametrize("kind", KINDS)
def test_verify_refuses_an_odd_public_key_beside_the_log(tmp_path: Path, kind: str) -> None:
    """An unreadable ``audit.pub`` is an error (as a garbled one is), not a hang."""
    logdir = tmp_path / "audit"
    _build(logdir)
    plant(kind, logdir / "audit.pub", tmp_path)
    _assert_refused(within_deadline(lambda: verify_log(logdir), tmp_path), "audit.pub")


@pytest.mark.parametrize("kind", KINDS)
def test_show_and_stats_refuse_an_odd_log_file(tmp_path: Path, kind: str) -> None:
    logdir = tmp_path / "audit"
    _build(logdir)
    plant(kind, logdir / "audit.jsonl", tmp_path)
    _assert_refused(within_deadline(lambda: list(iter_records(logdir)), tmp_path),
                    "audit.jsonl")


# -- body files ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_verify_reports_an_odd_body_segment_as_a_bad_body(tmp_path: Path, kind: str) -> None:
    logdir = tmp_path / "audit"
    _build(logdir)
    plant(kind, logdir / "bodies" / "segment-000001.bin", tmp_path)
    report = within_deadline(lambda: verify_log(logdir), tmp_path)
    assert not isinstance(report, BaseException), f"verify raised {report!r}"
    assert not report.ok
    assert report.kind == "bad_body"
    assert report.first_bad_seq == 1   # the record naming the body
    assert "segment-000001.bin" in report.reason, report.reason


@pytest.mark.parametrize("kind", KINDS)
def test_verify_reports_an_odd_segment_even_when_no_record_names_a_body(
        tmp_path: Path, kind: str) -> None:
    logdir = tmp_path / "audit"
    _build(logdir, with_body=False)
    plant(kind, logdir / "bodies" / "segment-000001.bin", tmp_path)
    report = within_deadline(lambda: verify_log(logdir), tmp_path)
    assert not isinstance(report, BaseException), f"verify raised {report!r}"
    assert not report.ok
    assert report.kind == "bad_body"
    assert "segment-000001.bin" in report.reason, report.reason


@pytest.mark.parametrize("kind", KINDS)
def test_opening_a_log_whose_newest_segment_is_odd_raises_audit_error(
        tmp_path: Path, kind: str) -> None:
    logdir = tmp_path / "audit"
    _build(logdir)
    plant(kind, logdir / "bodies" / "segment-000001.bin", tmp_path)
    _assert_refused(within_deadline(_open(logdir), tmp_path), "segment-000001.bin")


@pytest.mark.parametrize("kind", KINDS)
def test_an_odd_body_file_of_the_older_layout_is_a_bad_body(tmp_path: Path,
                                                            kind: str) -> None:
    """``bodies/<aa>/<sha256>``: verify reports it, a read refuses it, and the writer does
    not take it for the stored body (it stores the body in a segment again)."""
    logdir = tmp_path / "audit"
    digest = _build(logdir)
    legacy = logdir / "bodies" / digest[:2] / digest
    plant(kind, legacy, tmp_path)
    report = within_deadline(lambda: verify_log(logdir), tmp_path)
    assert not isinstance(report, BaseException), f"verify raised {report!r}"
    assert (report.ok, report.kind, report.first_bad_seq) == (False, "bad_body", 1)
    assert digest in report.reason, report.reason
    store = BodyStore(logdir / "bodies")
    _assert_refused(within_deadline(lambda: store.read(digest), tmp_path), digest)
    segment = logdir / "bodies" / "segment-000001.bin"
    before = segment.stat().st_size
    with AuditLog(logdir) as log:
        log.append("code.exec", bodies={"code": "x = 1"})
    assert segment.stat().st_size > before


# -- the writer ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_an_odd_file_where_the_writer_starts_a_segment_fails_the_log_closed(
        tmp_path: Path, kind: str) -> None:
    """The current segment moved away and something planted under the next one's name:
    the write fails and the log refuses further writes, rather than wait on a FIFO or
    append through a symlink."""
    logdir = tmp_path / "audit"
    log = AuditLog(logdir)
    log.append("code.exec", bodies={"code": "x = 1"})
    log.sync()
    bodies = logdir / "bodies"
    (bodies / "segment-000001.bin").rename(tmp_path / "moved.bin")
    plant(kind, bodies / "segment-000002.bin", tmp_path)

    def write() -> None:
        log.append("code.exec", bodies={"code": "y = 2"})
        log.sync()

    failed = within_deadline(write, tmp_path)
    assert isinstance(failed, AuditWriteError), repr(failed)
    assert "segment-000002.bin" in str(failed), str(failed)
    with pytest.raises(AuditWriteError):
        log.append("after", number=1)
    with pytest.raises(AuditWriteError):
        log.close()
    if kind == "symlink_to_regular_file":
        assert (tmp_path / "segment-000002.bin.real").read_bytes() == b""
