"""An interrupt of a cell cuts the waits of its running host calls (``CallCuts``): the
waiter is woken at once and the call settled as abandoned, as at its deadline; a call
made after the cut never starts; a call that ended first is untouched."""

from __future__ import annotations

import threading
import time
from functools import partial

import pytest

from rlmbox.runtime.bounded_call import (
    INTERRUPT,
    CallAbandoned,
    CallCuts,
    Deadline,
    run_bounded,
)


def _note(steps: list[str], what: str, _detail: object) -> None:
    steps.append(what)


def _far() -> Deadline:
    return Deadline(time.monotonic() + 30, "cell_timeout_s", 30)


def test_a_cut_wakes_the_waiter_at_once_and_the_late_end_follows_the_abandonment() -> None:
    cuts, release, started = CallCuts(), threading.Event(), threading.Event()
    order: list[str] = []

    def hung() -> str:
        started.set()
        release.wait(30)
        return "late"

    def interrupter() -> None:
        started.wait(10)
        cuts.cut()

    threading.Thread(target=interrupter, daemon=True).start()
    began = time.monotonic()
    with pytest.raises(CallAbandoned) as raised:
        run_bounded(hung, _far(), name="test", cuts=cuts,
                    on_abandon=lambda a: order.append(f"abandon:{a.deadline.limit}"),
                    on_late=lambda error: order.append(f"late:{error}"))
    assert time.monotonic() - began < 5
    assert raised.value.deadline.limit == INTERRUPT
    assert str(raised.value) == "the cell was interrupted"
    release.set()
    for _ in range(500):
        if len(order) == 2:
            break
        time.sleep(0.01)
    assert order == ["abandon:interrupt", "late:None"]


def test_a_call_made_after_the_cut_never_runs() -> None:
    cuts, ran = CallCuts(), threading.Event()
    cuts.cut()
    order: list[str] = []
    with pytest.raises(CallAbandoned):
        run_bounded(ran.set, _far(), name="test", cuts=cuts,
                    on_abandon=lambda a: order.append("abandon"),
                    on_late=lambda error: order.append("late"))
    time.sleep(0.1)
    assert not ran.is_set()
    assert order == ["abandon", "late"]


def test_arming_for_the_next_cell_lets_its_calls_run() -> None:
    cuts = CallCuts()
    cuts.cut()
    cuts.arm()
    assert run_bounded(lambda: 7, _far(), name="test", cuts=cuts,
                       on_abandon=lambda a: None, on_late=lambda e: None) == 7


def test_a_cut_racing_the_calls_end_releases_the_waiter_exactly_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Whichever of the cut and the worker's end comes first wakes the waiter; the other
    must not release the lock a second time (a RuntimeError on a thread)."""
    failures: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: failures.append(args.exc_value))
    cuts = CallCuts()
    settled: list[list[str]] = []
    for _ in range(300):
        cuts.arm()
        steps: list[str] = []
        settled.append(steps)
        racer = threading.Thread(target=cuts.cut, daemon=True)
        racer.start()
        try:
            value = run_bounded(lambda: 1, _far(), name="test", cuts=cuts,
                                on_abandon=partial(_note, steps, "abandon"),
                                on_late=partial(_note, steps, "late"))
            steps.append(f"value:{value}")
        except CallAbandoned:
            steps.append("abandoned")
        racer.join()
    time.sleep(0.2)   # the workers of calls the cut won are done by now
    assert failures == []
    # each call either returned (nothing settled) or was abandoned, then ended late, once
    assert {tuple(steps) for steps in settled} <= {("value:1",),
                                                    ("abandon", "abandoned", "late"),
                                                    ("abandon", "late", "abandoned")}
