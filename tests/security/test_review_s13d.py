"""Hostile review s13d: the agent's host-call gate between cells (``Agent.call_host``
refuses a call once ``_close_calls`` has closed them; ``_close_calls`` takes ``_call_lock``
and so waits for a call another thread has in flight). Strict xfails are promises found
broken; unmarked tests are attacks that held."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from rlmbox.lm.base import Completion
from rlmbox.runtime.session import SessionState

from .harness import Runtimes, events, exec_bounded, watched_session

PERMIT_ALL = [{"id": "permit-tools", "effect": "permit", "function": "tool.*"},
              {"id": "permit-llm", "effect": "permit", "function": "llm_query"}]
BIG_BUDGET = {"tree": {"calls": 1_000_000, "max_prompt_chars": 10_000}}
BOUND_S = 25.0
HANG_S = 20.0


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Frees every hung host function when the test ends, pass or fail."""
    event = threading.Event()
    yield event
    event.set()


def _slow(release: threading.Event, seconds: float) -> Callable[[], int]:
    def slow() -> int:
        release.wait(seconds)
        return 1
    return slow


class _SlowLM:
    """An LM whose every completion takes ``seconds`` (or until the test releases it)."""

    name = "slow"
    model = "slow"

    def __init__(self, release: threading.Event, seconds: float) -> None:
        self._release, self._seconds = release, seconds

    def complete(self, prompt: str, *, model: str | None = None) -> Completion:
        self._release.wait(self._seconds)
        return Completion(text="late", model=model or self.model, input_tokens=3,
                          output_tokens=1)


# --- broken: the host withholds the reply of a call cut by the deadline -----------------------

HELPER_JOINED = """
import threading
kept = 41
_t = threading.Thread(target=slow, daemon=True)
_t.start()
_t.join()
"""

HELPER_LEFT = """
import threading
kept = 41
threading.Thread(target=slow, daemon=True).start()
"""


@pytest.mark.parametrize("code", [HELPER_JOINED, HELPER_LEFT], ids=["joined", "main-ended"])
@pytest.mark.parametrize("backend", ["process", "docker-runc"])
def test_a_deadline_while_a_helper_thread_waits_on_a_host_call_keeps_the_session(
        runtimes: Runtimes, release: threading.Event, code: str) -> None:
    """A cell of 2 s whose helper thread calls a tool that takes 20 s. The main thread
    either waits for it (and is interrupted at 2 s) or has already ended. Row 23e: the
    deadline abandons the call and the cell is interrupted, its namespace kept; the
    next cell runs and calls host functions."""
    rt = runtimes(rules=PERMIT_ALL, limits={"cell_timeout_s": 2, "interrupt_grace_s": 1},
                  budgets=BIG_BUDGET)
    tools = {"slow": _slow(release, HANG_S), "echo": lambda x: x}
    with watched_session(rt, tools=tools) as (session, _):
        result = exec_bounded(session, code, BOUND_S)
        # the main thread that had ended may report ok; either way not killed
        assert result.status in ("interrupted", "ok"), (result.status, result.error)
        assert not events(rt, "sandbox.killed"), events(rt, "sandbox.killed")
        after = exec_bounded(session, "print(kept, echo(2))", BOUND_S)
        assert (after.status, after.stdout) == ("ok", "41 2\n"), after


POOL = """
from concurrent.futures import ThreadPoolExecutor
kept = 41
_pool = ThreadPoolExecutor(4)
_futures = [_pool.submit(llm_query, f"part {i}") for i in range(8)]
answers = [f.result() for f in _futures]
"""


@pytest.mark.parametrize("backend", ["process"])
def test_an_llm_query_pool_cut_by_the_deadline_keeps_the_session(
        runtimes: Runtimes, release: threading.Event) -> None:
    """The RLM pattern: ``llm_query`` fanned out on a thread pool, the LM slow (3 s a
    completion), the cell's wall time 2 s. The main thread waits on the futures and is
    interrupted at 2 s; the session must go on."""
    rt = runtimes(lm=_SlowLM(release, 3.0), rules=PERMIT_ALL,
                  limits={"cell_timeout_s": 2, "interrupt_grace_s": 1}, budgets=BIG_BUDGET)
    with watched_session(rt, tools={"echo": lambda x: x}) as (session, _):
        result = exec_bounded(session, POOL, BOUND_S)
        assert result.status == "interrupted", (result.status, result.error)
        assert session.state is not SessionState.DEAD, session.death_reason
        after = exec_bounded(session, "print(kept, echo(2))", BOUND_S)
        assert (after.status, after.stdout) == ("ok", "41 2\n"), after


# --- held ------------------------------------------------------------------------------------

@pytest.mark.parametrize("code", [HELPER_JOINED, HELPER_LEFT], ids=["joined", "main-ended"])
@pytest.mark.parametrize("backend", ["process"])
def test_an_interrupt_while_a_helper_waits_on_a_slow_call_ends_the_cell_at_once(
        runtimes: Runtimes, release: threading.Event, code: str) -> None:
    """The main thread waits for its helper (or has ended and waits in ``_close_calls``)
    while the helper's tool takes 20 s: ``interrupt`` abandons the call and answers it,
    so the cell ends at once; its SIGINT (outside the cell, when the main thread had
    ended) does not reach the next cell, whose calls are answered."""
    rt = runtimes(rules=PERMIT_ALL, limits={"cell_timeout_s": 15}, budgets=BIG_BUDGET)
    tools = {"slow": _slow(release, HANG_S), "echo": lambda x: x}
    with watched_session(rt, tools=tools) as (session, _):
        for n in range(3):
            timer = threading.Timer(0.5, lambda: session.interrupt("review"))
            started = time.monotonic()
            timer.start()
            result = exec_bounded(session, code, BOUND_S)
            timer.join()
            took = time.monotonic() - started
            assert result.status in ("ok", "interrupted"), (n, result)
            assert took < 3.0, (n, took, result)
            after = exec_bounded(session, "import time; time.sleep(0.3); print(kept, echo(n))"
                                 .replace("echo(n)", f"echo({n})"), BOUND_S)
            assert (after.status, after.stdout) == ("ok", f"41 {n}\n"), (n, after)
        assert not events(rt, "sandbox.killed")


HAMMER = """
import threading, time
threading.stack_size(256 * 1024)
_halt = []
def _pester():
    while not _halt:
        try:
            small()
        except Exception:
            pass
for _ in range(8):
    threading.Thread(target=_pester, daemon=True).start()
time.sleep(0.3)
"""


@pytest.mark.parametrize("backend", ["process"])
def test_helpers_hammering_host_calls_do_not_starve_the_cells_end(runtimes: Runtimes) -> None:
    """Eight threads call a host function in a loop as the main thread ends: it must win
    ``_call_lock`` (not fair on Python 3.11) soon; every cell ends long before its wall
    time, and the next cell's own calls get their own replies."""
    rt = runtimes(rules=PERMIT_ALL, limits={"cell_timeout_s": 8, "pids": 128},
                  budgets=BIG_BUDGET)
    with watched_session(rt, tools={"small": lambda: 1, "echo": lambda x: x}) as (session, _):
        for n in range(5):
            started = time.monotonic()
            result = exec_bounded(session, HAMMER, BOUND_S)
            took = time.monotonic() - started
            assert result.status == "ok", (n, result)
            assert took < 3.0, (n, took)
            assert exec_bounded(session, "_halt.append(1); import time; time.sleep(0.05)",
                                BOUND_S).status == "ok"
            after = exec_bounded(session, f"print(echo({n}), echo('x'))", BOUND_S)
            assert (after.status, after.stdout) == ("ok", f"{n} x\n"), (n, after)


SELF_LOCKED = """
import threading
class _Sneaky(dict):
    def items(self):          # the JSON encoder calls it under _call_lock
        small()               # a second call in the same thread: _call_lock is not reentrant
        return super().items()
threading.Thread(target=lambda: small(_Sneaky(a=1)), daemon=True).start()
import time
time.sleep(0.2)
"""


@pytest.mark.parametrize("backend", ["process"])
def test_a_helper_locked_inside_its_own_call_is_killed_at_the_wall_time(
        runtimes: Runtimes) -> None:
    """Model code can make the result wait forever without touching the agent: a dict
    subclass whose ``items`` (run by the JSON encoder under ``_call_lock``) calls a host
    function deadlocks its thread holding the lock, and ``_close_calls`` (outside the cell,
    deaf to SIGINT) waits for it. Bounded: the host kills the sandbox at the wall time
    plus the grace period, and records it."""
    rt = runtimes(rules=PERMIT_ALL, limits={"cell_timeout_s": 2, "interrupt_grace_s": 1},
                  budgets=BIG_BUDGET)
    with watched_session(rt, tools={"small": lambda *a: 1}) as (session, _):
        started = time.monotonic()
        result = exec_bounded(session, SELF_LOCKED, BOUND_S)
        took = time.monotonic() - started
        assert result.status == "killed", result
        assert took < 2 + 1 + 2.0, took
        assert session.state is SessionState.DEAD
        assert events(rt, "limit.exceeded", limit="cell_timeout_s")
        assert events(rt, "sandbox.killed")


FLOOD_WHILE_CLOSING = """
import os, threading
kept = 41
def _flood():
    for _ in range(64):
        os.write(1, b"x" * 65536)
threading.Thread(target=slow, daemon=True).start()
_ft = threading.Thread(target=_flood, daemon=True)
_ft.start()
"""


@pytest.mark.parametrize("backend", ["process"])
def test_a_flood_stop_while_the_main_thread_waits_in_close_calls(
        runtimes: Runtimes, release: threading.Event) -> None:
    """The main thread has ended and waits for its helper's 1 s call in ``_close_calls``
    while another thread floods past ``output_stop_bytes``: the pump's SIGINT lands
    outside the cell and is noted, nothing deadlocks (the pump drains on), the cell ends
    once the call is answered, and the next cell is not interrupted."""
    rt = runtimes(rules=PERMIT_ALL, limits={"cell_timeout_s": 8, "output_stop_bytes": 262144},
                  budgets=BIG_BUDGET)
    tools = {"slow": _slow(release, 1.0), "echo": lambda x: x}
    with watched_session(rt, tools=tools) as (session, _):
        for n in range(3):
            started = time.monotonic()
            result = exec_bounded(session, FLOOD_WHILE_CLOSING, BOUND_S)
            took = time.monotonic() - started
            assert result.status in ("ok", "interrupted"), (n, result)
            assert took < 4.0, (n, took)
            # the flood thread may still be writing: its output lands in whichever cell
            # runs (a thread that outlives its cell is not isolated from the next one's
            # output), so a cell waits for it first; the next is not interrupted and its
            # own call is answered
            drained = exec_bounded(session, "_ft.join()", BOUND_S)   # its flood may stop it
            assert drained.status in ("ok", "interrupted"), (n, drained)
            after = exec_bounded(session, f"print(kept, echo({n}))", BOUND_S)
            assert (after.status, after.stdout) == ("ok", f"41 {n}\n"), (n, after)
