"""Session.interrupt / the daemon's interrupt: a host call the cell waits on is abandoned
at once, as at its deadline, and recorded so (``limit: interrupt``); a cell that catches
the interrupt and calls again gets a refusal and the host function never runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .harness import Runtimes, events, watched_session

HANG_S = 30.0
PERMIT_TOOLS = [{"id": "permit-tools", "effect": "permit", "function": "tool.*"}]

# the cell swallows the interrupt and calls the tool again
STUBBORN = """
try:
    hung()
except KeyboardInterrupt:
    pass
try:
    again = hung()
except Exception as exc:
    again = f"{type(exc).__name__}: {exc}"
print(again)
"""


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


@pytest.mark.parametrize("backend", ["process"])
def test_a_call_after_the_interrupt_is_refused_and_never_runs(
        runtimes: Runtimes, release: threading.Event) -> None:
    runs: list[float] = []
    started = threading.Event()

    def hung() -> str:
        runs.append(time.monotonic())
        started.set()
        release.wait(HANG_S)
        return "done"

    rt = runtimes(rules=PERMIT_TOOLS, limits={"cell_timeout_s": 10})
    with watched_session(rt, tools={"hung": hung}) as (session, _):
        box: dict[str, Any] = {}
        worker = threading.Thread(target=lambda: box.update(r=session.exec(STUBBORN)),
                                  daemon=True)
        worker.start()
        try:
            assert started.wait(10), "the tool never ran"
            interrupted_at = time.monotonic()
            assert session.interrupt("test")
            worker.join(5.0)
            waited = time.monotonic() - interrupted_at
            assert not worker.is_alive(), f"the cell ran {waited:.1f} s past the interrupt"
        finally:
            release.set()
            worker.join(HANG_S)
        result = box["r"]
        # the cell caught it and went on, and still ends interrupted (review s15b)
        assert (result.status, result.error) == (
            "interrupted", "KeyboardInterrupt: the cell was interrupted")
        assert "TimeoutError" in result.stdout
        assert "interrupted" in result.stdout
        assert len(runs) == 1, "the call made after the interrupt ran"
        abandoned = events(rt, "host.call", function="tool.hung", outcome="abandoned")
        assert [a["limit"] for a in abandoned] == ["interrupt", "interrupt"]
        # the next cell's calls run again
        release.clear()
        release.set()
        assert session.exec("print(hung())").stdout == "done\n"
