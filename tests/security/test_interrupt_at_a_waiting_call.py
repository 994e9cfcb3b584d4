"""An interrupt that lands while the cell waits on a host call ends the cell as
``interrupted``, whichever reaches the sandbox first: the SIGINT, or the reply of the call
the interrupt abandoned. The reply raises ``TimeoutError`` in the cell, so when it won the
race the cell ended as an ``error`` (CI at f51f82f:
``test_review_s13c.py::test_interrupts_while_the_main_thread_reads_big_replies_tear_no_frame``).
The host now reports a cell its caller or its deadline interrupted as ``interrupted``,
whatever the cell did after (review s15b: raising ``KeyboardInterrupt`` in the sandbox
instead killed worker threads that catch ``Exception``). The cells below ignore SIGINT, so
the reply always wins.
"""

from __future__ import annotations

import threading
import time

import pytest

from .harness import Runtimes, exec_bounded, watched_session

PERMIT_TOOLS = [{"id": "permit-tools", "effect": "permit", "function": "tool.*"}]
BOUND_S = 30.0
SIGINT_IGNORED = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"


def _interrupted_during(runtimes: Runtimes, code: str) -> tuple[str, str | None, str]:
    rt = runtimes(rules=PERMIT_TOOLS, limits={"cell_timeout_s": 20})
    release = threading.Event()
    with watched_session(rt, tools={"slow": lambda: release.wait(15)}) as (session, _):
        timer = threading.Timer(1.0, lambda: session.interrupt("test"))
        timer.start()
        started = time.monotonic()
        result = exec_bounded(session, SIGINT_IGNORED + code, BOUND_S)
        took = time.monotonic() - started
        timer.join()
        release.set()
        assert took < 10, took
        after = exec_bounded(session, "print('next')", BOUND_S)
        assert (after.status, after.stdout) == ("ok", "next\n")
    return result.status, result.error, result.stdout


@pytest.mark.parametrize("backend", ["process", "docker-runc"])
def test_the_reply_of_a_call_an_interrupt_abandoned_interrupts_the_cell(
        runtimes: Runtimes) -> None:
    status, error, _ = _interrupted_during(runtimes, "slow()\n")
    assert (status, error) == ("interrupted", "KeyboardInterrupt: the cell was interrupted")


@pytest.mark.parametrize("backend", ["process"])
def test_a_cell_that_catches_the_abandoned_call_and_goes_on_still_ends_interrupted(
        runtimes: Runtimes) -> None:
    status, error, stdout = _interrupted_during(
        runtimes, "try:\n    slow()\nexcept Exception as exc:\n    print('caught', exc)\n")
    assert (status, error) == ("interrupted", "KeyboardInterrupt: the cell was interrupted")
    assert stdout == "caught tool.slow abandoned: the cell was interrupted\n"


@pytest.mark.parametrize("backend", ["process"])
def test_the_reply_of_a_call_the_cells_deadline_abandoned_interrupts_the_cell(
        runtimes: Runtimes) -> None:
    """The cell's wall time is an interrupt too (its SIGINT, then the grace): the cell
    ends ``interrupted`` naming the limit, not as an ``error`` of the abandoned call's
    ``TimeoutError``."""
    rt = runtimes(rules=PERMIT_TOOLS, limits={"cell_timeout_s": 1.5})
    release = threading.Event()
    with watched_session(rt, tools={"slow": lambda: release.wait(15)}) as (session, _):
        result = exec_bounded(session, SIGINT_IGNORED + "slow()\n", BOUND_S)
        release.set()
        assert result.status == "interrupted", (result.status, result.error)
        assert "cell_timeout_s" in (result.error or ""), result.error
        assert exec_bounded(session, "print('next')", BOUND_S).stdout == "next\n"


@pytest.mark.parametrize("backend", ["process"])
def test_a_tool_past_its_own_timeout_still_raises_timeout_error_and_the_cell_goes_on(
        runtimes: Runtimes) -> None:
    """Only what stops the cell interrupts it: ``tool_timeout_s`` ends the call alone."""
    rt = runtimes(rules=PERMIT_TOOLS, limits={"cell_timeout_s": 20, "tool_timeout_s": 1})
    release = threading.Event()
    with watched_session(rt, tools={"slow": lambda: release.wait(15)}) as (session, _):
        result = exec_bounded(
            session, "try:\n    slow()\nexcept TimeoutError as exc:\n    print('caught')\n",
            BOUND_S)
        release.set()
    assert (result.status, result.stdout) == ("ok", "caught\n"), result
