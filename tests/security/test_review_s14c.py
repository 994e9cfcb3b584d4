"""Review s14c: hostile tests of ``read_file``'s piece limit (caa4300, security.md F4b).

Legitimate reads must not be refused by it (a 0-byte file, files of exactly, and just past,
``CHUNK_BYTES``, a file that grows while it is read); a hostile sandbox must not hold
``read_file`` another way. A strict xfail marks a break found; the rest held.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from rlmbox.errors import FileTransferRefused
from rlmbox.runtime import session_files
from rlmbox.runtime.session_files import CHUNK_BYTES, SHORT_READS_ALLOWED

from .harness import Runtimes, exec_bounded, watched_session
from .test_review_s14a import BOUND_S, FILES_RULES, POISON_FILES

MiB = 1024 * 1024


@pytest.mark.parametrize("backend", ["process"])
def test_legitimate_reads_of_edge_sizes_are_never_refused_for_their_pieces(
        runtimes: Runtimes) -> None:
    rt = runtimes(rules=FILES_RULES, limits={"file_transfer_mb": 16})
    sizes = [0, 1, CHUNK_BYTES - 1, CHUNK_BYTES, CHUNK_BYTES + 1, 3 * CHUNK_BYTES]
    with watched_session(rt) as (session, _):
        made = exec_bounded(session, (
            "import os\n"
            f"for n in {sizes!r}:\n"
            "    with open(f'/tmp/s14c-{n}', 'wb') as fh:\n"
            "        fh.write(bytes(i % 251 for i in range(n)))\n"), BOUND_S)
        assert made.status == "ok", made
        for n in sizes:
            data = session.read_file(f"/tmp/s14c-{n}")
            assert data == bytes(i % 251 for i in range(n)), n


@pytest.mark.parametrize("backend", ["process"])
def test_a_file_growing_while_it_is_read_is_read_not_refused(runtimes: Runtimes) -> None:
    """Model code appends to a file (a log) from a thread while the host reads it: each
    answer's size is larger than the last, the read takes what it sees."""
    rt = runtimes(rules=FILES_RULES, limits={"file_transfer_mb": 32})
    with watched_session(rt) as (session, _):
        started = exec_bounded(session, (
            "import threading, time\n"
            "with open('/tmp/grow', 'wb') as fh:\n"
            "    fh.write(b'a' * (2 * 4 * 1024 * 1024 + 5))\n"
            "def grow():\n"
            "    with open('/tmp/grow', 'ab') as fh:\n"
            "        for _ in range(3000):\n"
            "            fh.write(b'b' * 1024); fh.flush(); time.sleep(0.001)\n"
            "threading.Thread(target=grow, daemon=True).start()\n"), BOUND_S)
        assert started.status == "ok", started
        data = session.read_file("/tmp/grow")
    assert len(data) >= 2 * CHUNK_BYTES + 5
    assert data.startswith(b"a" * (2 * CHUNK_BYTES + 5))
    assert data[2 * CHUNK_BYTES + 5:] == b"b" * (len(data) - 2 * CHUNK_BYTES - 5)


def _poisoned_read(runtimes: Runtimes, body: str, mb: int) -> tuple[dict[str, Any], float]:
    rt = runtimes(rules=FILES_RULES, limits={"file_transfer_mb": mb})
    box: dict[str, Any] = {}
    with watched_session(rt) as (session, _):
        poison = exec_bounded(session, POISON_FILES.format(body=body), BOUND_S)
        assert poison.status == "ok", poison

        def read() -> None:
            try:
                box["data"] = session.read_file("/tmp/any")
            except BaseException as exc:   # judged by the caller
                box["exc"] = exc

        began = time.monotonic()
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(3 * BOUND_S)
        took = time.monotonic() - began
        if reader.is_alive():
            session.sandbox.kill()
            reader.join(10)
    return box, took


@pytest.mark.parametrize("backend", ["process"])
def test_a_size_that_grows_with_each_answer_gains_no_pieces_past_the_cap(
        runtimes: Runtimes) -> None:
    """Each answer claims a size one piece larger than the last (staying under the cap):
    the pieces are still bounded by the cap's own count."""
    body = ('    global n\n'
            '    n = globals().get("n", 0) + 1\n'
            '    return {"t": "result", "id": frame["id"], "status": "ok", '
            '"has_answer": True, "answer": {"size": frame["offset"] + 2, '
            '"data": base64.b64encode(b"x").decode()}}')
    box, took = _poisoned_read(runtimes, body, 1)
    assert isinstance(box.get("exc"), FileTransferRefused), box
    assert "pieces" in str(box["exc"])
    assert took < BOUND_S


@pytest.mark.parametrize("backend", ["process"])
def test_a_slow_trickle_cannot_hold_read_file_past_a_few_chunk_timeouts(
        runtimes: Runtimes, monkeypatch: pytest.MonkeyPatch) -> None:
    """CHUNK_TIMEOUT_S scaled down to 1 s (the agent that cannot move a chunk in it is
    stuck); each answer comes after 0.8 s with one byte of a claimed 1 MiB."""
    monkeypatch.setattr(session_files, "CHUNK_TIMEOUT_S", 1.0)
    body = ('    import time\n'
            '    time.sleep(0.8)\n'
            '    return {"t": "result", "id": frame["id"], "status": "ok", '
            '"has_answer": True, "answer": {"size": 1024 * 1024, '
            '"data": base64.b64encode(b"x").decode()}}')
    box, took = _poisoned_read(runtimes, body, 1)
    assert isinstance(box.get("exc"), FileTransferRefused), box
    # a whole 1 MiB file is one piece; the end came at the whole read's deadline: two
    # chunk timeouts plus 1 s for the 1 MiB cap
    assert took < 5 * session_files.CHUNK_TIMEOUT_S, (
        f"held {took:.1f} s, {took / session_files.CHUNK_TIMEOUT_S:.0f} chunk timeouts "
        f"({SHORT_READS_ALLOWED + 1} pieces)")


@pytest.mark.parametrize("backend", ["process"])
@pytest.mark.parametrize("claim", ["cap", "grows-a-chunk-an-answer"])
def test_chunks_one_byte_short_are_bounded_by_the_caps_pieces(
        runtimes: Runtimes, monkeypatch: pytest.MonkeyPatch, claim: str) -> None:
    """CHUNK_BYTES scaled to 64 KiB (cap 1 MiB: 16 full chunks). The sandbox sends
    ``limit - 1`` bytes an answer, claiming the cap's size or one more chunk each time:
    the read ends (data or a refusal) within cap // CHUNK_BYTES + SHORT_READS_ALLOWED + 1
    answers, never more."""
    monkeypatch.setattr(session_files, "CHUNK_BYTES", 64 * 1024)
    asked: list[int] = []
    real_ask = session_files.SessionFiles._ask

    def counting_ask(self: Any, record: dict[str, Any], request: dict[str, Any],
                     *until: float) -> Any:
        asked.append(1)
        return real_ask(self, record, request, *until)

    monkeypatch.setattr(session_files.SessionFiles, "_ask", counting_ask)
    size = ("1024 * 1024" if claim == "cap"
            else "min(1024 * 1024, frame['offset'] + 2 * frame['limit'])")
    body = ('    return {"t": "result", "id": frame["id"], "status": "ok", '
            f'"has_answer": True, "answer": {{"size": {size}, '
            '"data": base64.b64encode(b"x" * (frame["limit"] - 1)).decode()}}')
    box, took = _poisoned_read(runtimes, body, 1)
    reads = len(asked)
    assert reads >= MiB // (64 * 1024)   # the pieces were really asked for
    assert reads <= MiB // (64 * 1024) + SHORT_READS_ALLOWED + 1, reads
    assert took < BOUND_S
    if "data" in box:
        assert len(box["data"]) <= MiB
    else:
        assert isinstance(box.get("exc"), FileTransferRefused), box
