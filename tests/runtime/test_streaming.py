"""``Session.exec(on_output=...)``: the cell's output as it happens, exactly as capped."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

from rlmbox.runtime.runtime import Runtime

# The cell prints, then waits (polling a host tool, with a generous deadline) until the
# host has seen that print through on_output; so it can only finish "released" if the
# piece reached the callback while the cell was still running.
WAITING_CELL = """
import time
print('first piece', flush=True)
deadline = time.monotonic() + 90
while not seen() and time.monotonic() < deadline:
    time.sleep(0.25)
print('released' if seen() else 'gave up')
"""


def test_pieces_arrive_while_the_cell_runs(make_runtime: Callable[..., Runtime]) -> None:
    rt = make_runtime(limits={"cell_timeout_s": 120})
    first = threading.Event()
    pieces: list[tuple[str, str]] = []

    def on_output(stream: str, text: str) -> None:
        pieces.append((stream, text))
        if "first piece" in text:
            first.set()

    with rt.session(tools={"seen": first.is_set}) as s:
        r = s.exec(WAITING_CELL, on_output=on_output)
    assert r.status == "ok", r.error
    assert r.stdout == "first piece\nreleased\n"
    assert "".join(text for _, text in pieces) == r.stdout
    assert {stream for stream, _ in pieces} == {"stdout"}


def test_callback_runs_on_the_exec_thread(runtime: Runtime) -> None:
    threads: set[int] = set()
    with runtime.session() as s:
        s.exec("print('x')", on_output=lambda _s, _t: threads.add(threading.get_ident()))
    assert threads == {threading.get_ident()}


def test_streams_are_separated_and_in_order(runtime: Runtime) -> None:
    got: dict[str, list[str]] = {"stdout": [], "stderr": []}
    with runtime.session() as s:
        r = s.exec("import sys\nfor i in range(50):\n"
                   "    print('out', i, flush=True)\n"
                   "    print('err', i, file=sys.stderr, flush=True)",
                   on_output=lambda stream, text: got[stream].append(text))
    assert "".join(got["stdout"]) == r.stdout == "".join(f"out {i}\n" for i in range(50))
    assert "".join(got["stderr"]) == r.stderr == "".join(f"err {i}\n" for i in range(50))


def test_the_cap_applies_to_the_callback_too(make_runtime: Callable[..., Runtime]) -> None:
    rt = make_runtime(limits={"output_bytes": 4096, "output_stop_bytes": 1 << 20})
    pieces: list[str] = []
    with rt.session() as s:
        r = s.exec("print('y' * 200_000)", on_output=lambda _s, text: pieces.append(text))
    assert r.truncated
    assert r.dropped["stdout"] >= 200_000 - 4096
    streamed = "".join(pieces)
    assert streamed == "y" * 4096
    assert r.stdout.startswith(streamed)
    assert "output truncated" in r.stdout


def test_a_raising_callback_is_dropped_and_audited(
        make_runtime: Callable[..., Runtime], tmp_path: Path) -> None:
    rt = make_runtime()
    calls: list[str] = []

    def broken(_stream: str, text: str) -> None:
        calls.append(text)
        raise RuntimeError("consumer bug")

    with rt.session() as s:
        r = s.exec("for i in range(20):\n    print(i, flush=True)", on_output=broken)
        after = s.exec("print('next cell')")
    assert r.status == "ok"
    assert r.stdout == "".join(f"{i}\n" for i in range(20))   # result unaffected
    assert len(calls) == 1                                     # not called after it raised
    assert after.stdout == "next cell\n"
    log = (tmp_path / "audit-0" / "audit.jsonl").read_text()
    events = [json.loads(line) for line in log.splitlines()]
    failed = [e for e in events if e["event"] == "output.callback_failed"]
    assert len(failed) == 1
    assert failed[0]["cell"] == r.cell_id
    assert "consumer bug" in failed[0]["error"]
