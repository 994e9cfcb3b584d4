"""Something that is not a regular file under a log file's name (a FIFO, a directory, a
socket, a symlink) is refused with a clear error naming it, never read or waited on:
``verify`` reports it as damage and opening the log raises ``AuditError``.

A FIFO opened for reading blocks until a writer comes, and ``/dev/zero`` never ends, so
each call runs in a thread with a deadline: a test fails, rather than hangs, when the
refusal is missing.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rlmbox.audit.bodies import BodyStore
from rlmbox.audit.log import AuditLog
from rlmbox.audit.reader import iter_records
from rlmbox.audit.verify import verify_log
from rlmbox.errors import AuditError, AuditWriteError

KINDS = ("fifo", "directory", "symlink_to_dev_zero", "symlink_to_fifo", "socket",
         "symlink_to_regular_file")
_DEADLINE_S = 2.0


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


def _plant(kind: str, path: Path, elsewhere: Path) -> None:
    """Put an odd file of ``kind`` at ``path``, in place of what was there."""
    if path.is_symlink() or path.is_file():
        copy = path.read_bytes() if path.is_file() else b""
        path.unlink()
    else:
        copy = b""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "symlink_to_dev_zero":
        path.symlink_to("/dev/zero")
    elif kind == "symlink_to_fifo":
        target = elsewhere / f"{path.name}.fifo"
        os.mkfifo(target)
        path.symlink_to(target)
    elif kind == "socket":
        with contextlib.chdir(path.parent), socket.socket(socket.AF_UNIX) as sock:
            sock.bind(path.name)   # relative: a tmp path can pass the 108-byte limit
    elif kind == "symlink_to_regular_file":
        target = elsewhere / f"{path.name}.real"
        target.write_bytes(copy)
        path.symlink_to(target)
    else:
        raise AssertionError(kind)


def _unblock_fifos(root: Path) -> None:
    """Open every FIFO under ``root`` both ways once, so a call blocked opening one ends."""
    for entry in root.rglob("*"):
        with contextlib.suppress(OSError):
            if stat.S_ISFIFO(entry.lstat().st_mode):
                os.close(os.open(entry, os.O_RDWR | os.O_NONBLOCK))


def _within_deadline(call: Callable[[], Any], root: Path) -> Any:
    """``call()``'s value, or the exception it raised (returned, not raised); the test
    fails if it is still running at the deadline."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:   # handed back to the test, whatever it is
            outcome["value"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(_DEADLINE_S)
    if thread.is_alive():
        _unblock_fifos(root)
        thread.join(_DEADLINE_S)
        value = outcome.get("value")
        if isinstance(value, AuditLog):
            value.close()
        pytest.fail(f"still running after {_DEADLINE_S} s: it waited on an odd file")
    return outcome["value"]


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
    _plant(kind, logdir / name, tmp_path)
    report = _within_deadline(lambda: verify_log(logdir), tmp_path)
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
    _plant(kind, logdir / name, tmp_path)
    _assert_refused(_within_deadline(_open(logdir), tmp_path), name)


@pytest.mark.parametrize("kind", KINDS)
def test_opening_a_log_whose_current_file_is_empty_refuses_an_odd_rotated_file(
        tmp_path: Path, kind: str) -> None:
    """With nothing in ``audit.jsonl`` the head is read from the newest rotated file."""
    logdir = tmp_path / "audit"
    _build(logdir)
    (logdir / "audit.jsonl").write_bytes(b"")
    newest = sorted(logdir.glob("audit.0*.jsonl"))[-1]
    _plant(kind, newest, tmp_path)
    _assert_refused(_within_deadline(_open(logdir), tmp_path), newest.name)


@pytest.mark.parametrize("kind", KINDS)
def test_verify_refuses_an_odd_public_key_beside_the_log(tmp_path: Path, kind: str) -> None:
    """An unreadable ``audit.pub`` is an error (as a garbled one is), not a hang."""
    logdir = tmp_path / "audit"
    _build(logdir)
    _plant(kind, logdir / "audit.pub", tmp_path)
    _assert_refused(_within_deadline(lambda: verify_log(logdir), tmp_path), "audit.pub")


@pytest.mark.parametrize("kind", KINDS)
def test_show_and_stats_refuse_an_odd_log_file(tmp_path: Path, kind: str) -> None:
    logdir = tmp_path / "audit"
    _build(logdir)
    _plant(kind, logdir / "audit.jsonl", tmp_path)
    _assert_refused(_within_deadline(lambda: list(iter_records(logdir)), tmp_path),
                    "audit.jsonl")


# -- body files ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_verify_reports_an_odd_body_segment_as_a_bad_body(tmp_path: Path, kind: str) -> None:
    logdir = tmp_path / "audit"
    _build(logdir)
    _plant(kind, logdir / "bodies" / "segment-000001.bin", tmp_path)
    report = _within_deadline(lambda: verify_log(logdir), tmp_path)
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
    _plant(kind, logdir / "bodies" / "segment-000001.bin", tmp_path)
    report = _within_deadline(lambda: verify_log(logdir), tmp_path)
    assert not isinstance(report, BaseException), f"verify raised {report!r}"
    assert not report.ok
    assert report.kind == "bad_body"
    assert "segment-000001.bin" in report.reason, report.reason


@pytest.mark.parametrize("kind", KINDS)
def test_opening_a_log_whose_newest_segment_is_odd_raises_audit_error(
        tmp_path: Path, kind: str) -> None:
    logdir = tmp_path / "audit"
    _build(logdir)
    _plant(kind, logdir / "bodies" / "segment-000001.bin", tmp_path)
    _assert_refused(_within_deadline(_open(logdir), tmp_path), "segment-000001.bin")


@pytest.mark.parametrize("kind", KINDS)
def test_an_odd_body_file_of_the_older_layout_is_a_bad_body(tmp_path: Path,
                                                            kind: str) -> None:
    """``bodies/<aa>/<sha256>``: verify reports it, a read refuses it, and the writer does
    not take it for the stored body (it stores the body in a segment again)."""
    logdir = tmp_path / "audit"
    digest = _build(logdir)
    legacy = logdir / "bodies" / digest[:2] / digest
    _plant(kind, legacy, tmp_path)
    report = _within_deadline(lambda: verify_log(logdir), tmp_path)
    assert not isinstance(report, BaseException), f"verify raised {report!r}"
    assert (report.ok, report.kind, report.first_bad_seq) == (False, "bad_body", 1)
    assert digest in report.reason, report.reason
    store = BodyStore(logdir / "bodies")
    _assert_refused(_within_deadline(lambda: store.read(digest), tmp_path), digest)
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
    _plant(kind, bodies / "segment-000002.bin", tmp_path)

    def write() -> None:
        log.append("code.exec", bodies={"code": "y = 2"})
        log.sync()

    failed = _within_deadline(write, tmp_path)
    assert isinstance(failed, AuditWriteError), repr(failed)
    assert "segment-000002.bin" in str(failed), str(failed)
    with pytest.raises(AuditWriteError):
        log.append("after", number=1)
    with pytest.raises(AuditWriteError):
        log.close()
    if kind == "symlink_to_regular_file":
        assert (tmp_path / "segment-000002.bin.real").read_bytes() == b""
