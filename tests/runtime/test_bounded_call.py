"""Bounded host calls: each on a thread of its own at once, idle threads reused."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

from rlmbox.runtime.bounded_call import CallAbandoned, Deadline, run_bounded

T = TypeVar("T")
_REQUEST = contextvars.ContextVar("_REQUEST", default="none")


def _soon(seconds: float = 10.0) -> Deadline:
    return Deadline(time.monotonic() + seconds, "test", seconds)


def _bounded(work: Callable[[], T], deadline: Deadline | None = None) -> T:
    return run_bounded(work, deadline or _soon(), name="test",
                       on_abandon=lambda _abandoned: None, on_late=lambda _error: None)


def test_calls_one_after_another_reuse_one_idle_thread() -> None:
    """A thread is started for the first call only (starting one costs ~100 µs a call)."""
    threads = [_bounded(threading.current_thread) for _ in range(20)]   # kept alive: ids unique
    assert len({id(thread) for thread in threads}) == 1
    assert threads[0] is not threading.current_thread()


def test_a_call_made_inside_a_call_gets_a_thread_of_its_own() -> None:
    """A nested call (a child session's call inside rlm_query) never waits for its caller's
    thread: the outer call still holds it, the inner one runs on another and ends in time."""
    def outer() -> tuple[threading.Thread, threading.Thread]:
        return threading.current_thread(), _bounded(threading.current_thread, _soon(2.0))

    outer_thread, inner_thread = _bounded(outer)
    assert outer_thread is not inner_thread


def test_an_abandoned_call_keeps_its_thread_and_the_next_call_runs_in_time() -> None:
    release = threading.Event()
    late: list[BaseException | None] = []
    with pytest.raises(CallAbandoned):
        run_bounded(lambda: release.wait(10), _soon(0.05), name="test",
                    on_abandon=lambda _abandoned: None, on_late=late.append)
    started = time.monotonic()
    assert _bounded(lambda: "next", _soon(2.0)) == "next"
    assert time.monotonic() - started < 1.0
    release.set()
    for _ in range(200):
        if late:
            break
        time.sleep(0.01)
    assert late == [None]


def test_each_call_sees_its_callers_context_on_a_reused_thread() -> None:
    """Context-local state (a trace's running call) follows each call, never the last one's."""
    seen = []
    for request in ("first", "second"):
        token = _REQUEST.set(request)
        try:
            seen.append(_bounded(_REQUEST.get))
        finally:
            _REQUEST.reset(token)
    assert seen == ["first", "second"]
