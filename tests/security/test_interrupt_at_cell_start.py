"""An interrupt that comes as a cell starts is not lost (daemon.md "Interrupting a cell").

``interrupt()`` returns True once the session is running a cell, but the agent ignores a
SIGINT that lands before its cell begins (it may be a late one for the cell before). Such
an interrupt was lost: the cell ran on to its wall time (7 in 100 tries with a 0-2 ms
delay here; ``test_review_s11.py``'s interrupt race failed on it about 1 run in 11). The
host now writes an ``interrupt`` frame naming the cell before each SIGINT, and the agent
looks for it as the cell begins.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest

from rlmbox.runtime.results import ExecResult
from rlmbox.runtime.runtime import Runtime
from rlmbox.runtime.session import Session

from .harness import Runtimes, watched_session

SPIN = "while True:\n    pass\n"
CELL_TIMEOUT_S = 6.0


@pytest.mark.parametrize("backend", ["process", "docker-runc"])
def test_an_interrupt_before_the_exec_frame_is_written_stops_the_cell(
        runtimes: Runtimes) -> None:
    """The interrupt comes after ``exec`` made the session running and before the exec
    frame reaches the agent: its SIGINT can only land outside the cell."""
    rt: Runtime = runtimes(limits={"cell_timeout_s": CELL_TIMEOUT_S})
    with watched_session(rt) as (session, _):
        send = session.sandbox.send
        answers: list[bool] = []

        def interrupt_first(frame: dict[str, Any], timeout: float | None = None) -> None:
            if frame.get("t") == "exec" and not answers:
                asker = threading.Thread(target=lambda: answers.append(session.interrupt("test")))
                asker.start()
                asker.join(5)
                time.sleep(0.05)   # a SIGINT sent now has landed before the cell
            send(frame, timeout)

        session.sandbox.send = interrupt_first   # type: ignore[method-assign]
        started = time.monotonic()
        result = session.exec(SPIN)
        took = time.monotonic() - started
        session.sandbox.send = send   # type: ignore[method-assign]
        assert answers == [True]
        assert result.status == "interrupted", result
        assert took < CELL_TIMEOUT_S / 2, f"the interrupt was lost: the cell ran {took:.1f} s"
        assert session.exec("print('next')").stdout == "next\n"   # the next cell is not hit


def _run_into(session: Session, box: dict[str, ExecResult]) -> None:
    box["r"] = session.exec(SPIN)


@pytest.mark.parametrize("backend", ["process"])
def test_interrupts_racing_cell_starts_are_never_lost(runtimes: Runtimes) -> None:
    """40 cells, each interrupted 0-2 ms after it is sent: every one ends interrupted, at
    once, and a cell that follows runs untouched (no interrupt carried over)."""
    rt: Runtime = runtimes(limits={"cell_timeout_s": CELL_TIMEOUT_S})
    rng = random.Random(16)
    with watched_session(rt) as (session, _):
        for attempt in range(40):
            box: dict[str, ExecResult] = {}
            worker = threading.Thread(target=_run_into, args=(session, box))
            started = time.monotonic()
            worker.start()
            time.sleep(rng.random() * 0.002)
            while not session.interrupt("test"):   # not running yet: the cell starts soon
                time.sleep(0.0002)
            worker.join(CELL_TIMEOUT_S + 5)
            took = time.monotonic() - started
            assert box["r"].status == "interrupted", (attempt, box["r"])
            assert took < CELL_TIMEOUT_S / 2, f"attempt {attempt}: lost, the cell ran {took:.1f} s"
            after = session.exec("x = 1")
            assert after.status == "ok", (attempt, after)
