"""Review s15d (read-only, reproductions written by the lead): breaks found by reading
0fa3077's interrupted-cell rule and transfer records, each fixed.

A cell is reported ``interrupted`` when a call its interrupt or deadline ended or refused
reached it (``CallCuts.calls_reached``). The count was taken in ``CallCuts.cut``: a call that
had returned its value was counted, a count taken late landed in the next cell, and a batch
whose items the cut stopped before they ran was not counted. Each call now notes it on its
own thread (``note_reached``), before its cell can end. A write with data that is not bytes
left no record.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from rlmbox.errors import FileTransferRefused
from rlmbox.lm.scripted import ScriptedLM
from rlmbox.runtime import bounded_call

from .harness import Runtimes, audit_records, exec_bounded, watched_session
from .test_review_s14a import FILES_RULES
from .test_review_s15b import BOUND_S, PERMIT, SIGINT_IGNORED, _interrupt_after
from .test_review_s15c import _transfers


@pytest.mark.parametrize("backend", ["process"])
def test_a_batch_the_interrupt_stopped_reports_the_cell_interrupted(
        runtimes: Runtimes) -> None:
    """No call to cut when the interrupt comes (the cell sleeps, ignoring SIGINT); the batch
    made after it runs none of its items: the interrupt reached the cell through it."""
    rt = runtimes(rules=PERMIT, lm=ScriptedLM(lambda prompt: "answer"),
                  limits={"cell_timeout_s": 20})
    with watched_session(rt) as (session, _):
        timer = _interrupt_after(session, 0.5)
        result = exec_bounded(session, SIGINT_IGNORED + (
            "import time\ntime.sleep(1.5)\n"
            "got = llm_query_batched(['a', 'b'])\nprint(repr(got))\n"), BOUND_S)
        timer.join()
    assert "item not run: the cell was interrupted" in result.stdout, result
    assert result.status == "interrupted", result


@pytest.mark.parametrize("backend", ["process"])
def test_a_cut_counted_late_does_not_mark_the_next_cell(
        runtimes: Runtimes, monkeypatch: pytest.MonkeyPatch) -> None:
    """The interrupting thread is held after it ended cell 1's call until cell 2 began;
    cell 2's own interrupt reaches nothing (it sleeps, ignoring SIGINT): it stays ok."""
    release = threading.Event()
    rt = runtimes(rules=PERMIT, limits={"cell_timeout_s": 20})
    with watched_session(rt, tools={"slow": lambda: release.wait(15)}) as (session, _):
        cuts = session.dispatcher.cuts
        second = threading.Event()
        real_arm, real_cut = cuts.arm, bounded_call._Outcome.cut

        def arm() -> None:
            real_arm()
            if cuts.cell == 2:
                second.set()

        def slow_count(self: Any, limit: str) -> None:
            real_cut(self, limit)
            if self.cut_by == limit == "interrupt":   # this cut ended the call
                second.wait(10)

        cuts.arm = arm   # type: ignore[method-assign]
        monkeypatch.setattr(bounded_call._Outcome, "cut", slow_count)
        first_timer = _interrupt_after(session, 1.0)
        first = exec_bounded(session, SIGINT_IGNORED +
                             "try:\n    slow()\nexcept BaseException:\n    pass\n", BOUND_S)
        second_timer = _interrupt_after(session, 0.5)
        result = exec_bounded(session, SIGINT_IGNORED +
                              "import time\ntime.sleep(1.5)\nFINAL('x')\n", BOUND_S)
        first_timer.join()
        second_timer.join()
        release.set()
    assert first.status == "interrupted", first
    assert (result.status, result.answer) == ("ok", "x"), result


@pytest.mark.parametrize("backend", ["process"])
def test_a_call_that_returned_its_value_is_not_counted_as_cut(
        runtimes: Runtimes, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tool interrupts its own cell and returns; the waiter is held after its wake-up
    so the cut finds the call finished: the cell got its value, no cut reached it."""
    real_init = bounded_call._Outcome.__init__

    class SlowWaiter:
        def __init__(self, lock: Any) -> None:
            self.lock = lock

        def acquire(self, *args: Any, **kwargs: Any) -> bool:
            got: bool = self.lock.acquire(*args, **kwargs)
            time.sleep(0.3)
            return got

        def release(self) -> None:
            self.lock.release()

    def init(self: Any) -> None:
        real_init(self)
        self.finished = SlowWaiter(self.finished)

    monkeypatch.setattr(bounded_call._Outcome, "__init__", init)
    rt = runtimes(rules=PERMIT)
    box: dict[str, Any] = {}

    def quick() -> str:
        box["session"].interrupt("s15d")
        return "v"

    with watched_session(rt, tools={"quick": quick}) as (session, _):
        box["session"] = session
        result = exec_bounded(session, SIGINT_IGNORED + "print(quick())\nFINAL('x')\n",
                              BOUND_S)
    assert result.stdout == "v\n", result
    assert result.status == "ok", result


@pytest.mark.parametrize("backend", ["process"])
def test_a_write_with_data_that_is_not_bytes_is_one_refused_record(
        runtimes: Runtimes) -> None:
    rt = runtimes(rules=FILES_RULES)
    with watched_session(rt) as (session, _):
        with pytest.raises(FileTransferRefused, match="data must be bytes or str, not int"):
            session.write_file("/tmp/x", 5)   # type: ignore[arg-type]
        with pytest.raises(FileTransferRefused):
            session.write_file(None, 5)   # type: ignore[arg-type]
    writes = _transfers(audit_records(rt), "files.write")
    assert [w["outcome"] for w in writes] == ["refused", "refused"], writes
