"""A whole ``write_file`` ends within twice one chunk's timeout plus 1 s a MiB, as
``read_file`` does (security.md F4b): a sandbox answering each chunk just inside
``CHUNK_TIMEOUT_S`` held the caller one timeout a chunk (a 64 MiB file: 16 chunks, 16
minutes)."""

from __future__ import annotations

import pytest

from rlmbox.errors import FileTransferRefused
from rlmbox.runtime import session_files

from .harness import Runtimes, attempt_bounded, exec_bounded, watched_session
from .test_review_s14a import BOUND_S, FILES_RULES, POISON_FILES

CHUNK_TIMEOUT_S = 1.0       # scaled down from 60 s: an agent that cannot move a chunk is stuck
CHUNKS = 12
SLOW_ANSWER = ('    import time\n'
               '    time.sleep(0.8)\n'
               '    return {"t": "result", "id": frame["id"], "status": "ok", '
               '"has_answer": True, "answer": None}')


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """1 KiB chunks with a 1 s timeout each: a dozen chunks are a dozen round trips."""
    monkeypatch.setattr(session_files, "CHUNK_TIMEOUT_S", CHUNK_TIMEOUT_S)
    monkeypatch.setattr(session_files, "CHUNK_BYTES", 1024)


@pytest.mark.parametrize("backend", ["process"])
@pytest.mark.usefixtures("small_chunks")
def test_chunks_each_answered_just_in_time_cannot_hold_write_file(runtimes: Runtimes) -> None:
    rt = runtimes(rules=FILES_RULES)
    with watched_session(rt) as (session, _):
        poison = exec_bounded(session, POISON_FILES.format(body=SLOW_ANSWER), BOUND_S)
        assert poison.status == "ok", poison
        write = attempt_bounded(
            lambda: session.write_file("/tmp/slow", b"x" * (1024 * CHUNKS)), BOUND_S)
        assert not write.held
    assert isinstance(write.error, FileTransferRefused), write
    assert "did not answer" in str(write.error), write.error
    assert write.took < 3 * CHUNK_TIMEOUT_S, (
        f"held {write.took:.1f} s ({CHUNKS} chunks at 0.8 s each)")


@pytest.mark.parametrize("backend", ["process"])
@pytest.mark.usefixtures("small_chunks")
def test_a_write_of_many_chunks_answered_at_once_is_not_refused(runtimes: Runtimes) -> None:
    """The whole-transfer deadline bounds a stalling sandbox, not a large file."""
    rt = runtimes(rules=FILES_RULES)
    data = bytes(range(256)) * 4 * CHUNKS * 8
    with watched_session(rt) as (session, _):
        session.write_file("/tmp/many", data)
        assert session.read_file("/tmp/many") == data
