"""Hostile review s13c: the agent's frame routing (``agent/frame_io.py``: one thread reads
the stream at a time and routes each frame to the thread it is for). Strict xfails are
promises found broken; unmarked tests are attacks that held."""

from __future__ import annotations

import threading
import time

import pytest

from rlmbox.runtime.results import ExecResult
from rlmbox.runtime.session import Session

from .harness import Runtimes, exec_bounded, watched_session
from .test_leftover_threads import LEFTOVER as LEFTOVER_SMALL

PERMIT_TOOLS = [{"id": "permit-tools", "effect": "permit", "function": "tool.*"}]
BIG_BUDGET = {"tree": {"calls": 100_000_000, "max_prompt_chars": 10_000}}
BOUND_S = 20.0


CAUGHT = """
import time
caught = 0
_end = time.monotonic() + 4
while time.monotonic() < _end:
    try:
        try:
            small()
        except Exception:
            pass
    except KeyboardInterrupt:
        caught += 1
"""


def _hammer(session: Session, code: str) -> tuple[ExecResult, int]:
    """Runs ``code`` while interrupting it as fast as ``interrupt`` returns."""
    done = threading.Event()
    sent = [0]

    def interrupter() -> None:
        while not done.is_set():
            if session.interrupt("review"):
                sent[0] += 1
            time.sleep(0.0003)

    thread = threading.Thread(target=interrupter, daemon=True)
    thread.start()
    try:
        result = exec_bounded(session, code, BOUND_S)
    finally:
        done.set()
        thread.join()
    return result, sent[0]


@pytest.mark.parametrize("backend", ["process"])
def test_an_interrupt_amid_the_main_threads_host_calls_leaves_the_agent_reading(
        runtimes: Runtimes) -> None:
    """The cell catches KeyboardInterrupt and calls a host function again, thousands of
    times, each interrupt racing the frame code of one call; the next cell must run."""
    rt = runtimes(rules=PERMIT_TOOLS, limits={"cell_timeout_s": 8}, budgets=BIG_BUDGET)
    with watched_session(rt, tools={"small": lambda: 1}) as (session, _):
        assert exec_bounded(session, "kept = 41", BOUND_S).status == "ok"
        total, stop = 0, time.monotonic() + 20
        while time.monotonic() < stop:   # a cell may end at once (an interrupt outside
            result, sent = _hammer(session, CAUGHT)   # its try): then another round
            total += sent
            assert result.status in ("ok", "interrupted"), result
            after = exec_bounded(session, "print(kept)", BOUND_S, timeout=3)
            assert (after.status, after.stdout) == ("ok", "41\n"), (total, after)
        assert total > 1000, total


MANY = """
import threading
threading.stack_size(256 * 1024)
got = {}
def _call(i):
    got[i] = echo(i)
threads = [threading.Thread(target=_call, args=(i,)) for i in range(100)]
for t in threads:
    t.start()
mine = [echo(-i) for i in range(50)]   # the main thread's own calls, among theirs
for t in threads:
    t.join()
print(sorted(got.items()) == [(i, i) for i in range(100)], mine == [-i for i in range(50)])
"""


@pytest.mark.parametrize("backend", ["process", "docker-runc"])
def test_a_hundred_threads_calling_at_once_each_get_their_own_reply(
        runtimes: Runtimes) -> None:
    rt = runtimes(rules=PERMIT_TOOLS, limits={"cell_timeout_s": 15, "pids": 256, "memory_mb": 512},
                  budgets=BIG_BUDGET)
    with watched_session(rt, tools={"echo": lambda x: x}) as (session, _):
        for _ in range(3):
            result = exec_bounded(session, MANY, BOUND_S)
            assert (result.status, result.stdout) == ("ok", "True True\n"), result.error


ENDING = """
import threading
threading.stack_size(256 * 1024)
def _late():
    for i in range(30):
        try:
            if echo(i) != i:
                _wrong.append(i)
        except RuntimeError as exc:   # between cells, by design (security.md 23h)
            if "outlived the cell" not in str(exc):
                _wrong.append(repr(exc))
        except BaseException as exc:
            _wrong.append(repr(exc))
if "_wrong" not in globals():
    _wrong = []
for _ in range(2):
    threading.Thread(target=_late, daemon=True).start()
"""


@pytest.mark.parametrize("backend", ["process", "docker-runc"])
def test_threads_calling_as_the_cell_ends_take_no_frame_of_the_next(
        runtimes: Runtimes) -> None:
    """Threads still calling when their cell ends: the next cells begin at once, their
    own calls answered; no thread gets another's reply (echo answers its argument). A
    call a thread starts between cells is refused (RuntimeError: it outlived its cell)."""
    rt = runtimes(rules=PERMIT_TOOLS, limits={"cell_timeout_s": 10, "pids": 256},
                  budgets=BIG_BUDGET)
    with watched_session(rt, tools={"echo": lambda x: x}) as (session, _):
        for n in range(20):
            first = exec_bounded(session, ENDING, BOUND_S)
            assert first.status == "ok", first.error
            result = exec_bounded(session, f"print(echo({n}), echo('x'))", BOUND_S)
            assert (result.status, result.stdout) == ("ok", f"{n} x\n"), (n, result)
        time.sleep(1.0)
        result = exec_bounded(session, "print(_wrong)", BOUND_S)
        assert (result.status, result.stdout) == ("ok", "[]\n"), result


REPLACING = """
import sys, types
for name in ("threading", "select", "time"):
    sys.modules[name] = types.ModuleType(name)
threading = select = time = None
"""


@pytest.mark.parametrize("backend", ["process"])
def test_a_cell_replacing_threading_select_and_time_leaves_the_agent_working(
        runtimes: Runtimes) -> None:
    rt = runtimes(rules=PERMIT_TOOLS, limits={"cell_timeout_s": 5}, budgets=BIG_BUDGET)
    with watched_session(rt, tools={"echo": lambda x: x}) as (session, _):
        assert exec_bounded(session, "kept = 7", BOUND_S).status == "ok"
        assert exec_bounded(session, REPLACING, BOUND_S).status == "ok"
        for n in range(5):
            result = exec_bounded(session, f"print(echo({n}) + kept)", BOUND_S)
            assert (result.status, result.stdout) == ("ok", f"{n + 7}\n"), result
        # interrupted while it waits on a reply, and as it starts: still prompt
        slow = exec_bounded(session, "while True: echo(1)", BOUND_S, timeout=1)
        assert slow.status == "interrupted", slow
        assert slow.duration_s < 3, slow
        started = time.monotonic()
        timer = threading.Timer(0.2, lambda: session.interrupt("review"))
        timer.start()
        result = exec_bounded(session, "while True: pass", BOUND_S)
        timer.join()
        assert result.status == "interrupted", result
        assert time.monotonic() - started < 3, result
        result = exec_bounded(session, "print(kept)", BOUND_S)
        assert (result.status, result.stdout) == ("ok", "7\n"), result


HOGGED = """
import threading
threading.stack_size(256 * 1024)
_halt = []
def _burn():
    while not _halt:
        pass
def _pester():
    while not _halt:
        try:
            small()
        except Exception:
            pass
for _ in range(20):
    threading.Thread(target=_burn, daemon=True).start()
threading.Thread(target=_pester, daemon=True).start()
"""


@pytest.mark.parametrize("backend", ["process"])
def test_an_interrupt_as_the_cell_compiles_with_a_helper_reading_and_the_gil_hogged(
        runtimes: Runtimes) -> None:
    """The SIGINT lands while the cell still compiles (ignored; the interrupt frame is
    looked for as it begins), a leftover thread holds the reader role, and 20 threads
    fight for the GIL (the look waits 50 ms for the reader to route the frame): the
    caller's interrupt, not the wall time, still ends the cell."""
    rt = runtimes(rules=PERMIT_TOOLS, limits={"cell_timeout_s": 8, "pids": 256,
                                              "memory_mb": 1024}, budgets=BIG_BUDGET)
    big = "_big = [" + ",".join(str(i) for i in range(60000)) + "]\nwhile True:\n    pass\n"
    with watched_session(rt, tools={"small": lambda: 1}) as (session, _):
        assert exec_bounded(session, HOGGED, BOUND_S).status == "ok"
        for _ in range(4):
            timer = threading.Timer(0.03, lambda: session.interrupt("review"))
            timer.start()
            result = exec_bounded(session, big, BOUND_S)
            timer.join()
            assert (result.status, result.error) == (
                "interrupted", "KeyboardInterrupt: the cell was interrupted"), result
        assert exec_bounded(session, "_halt.append(1)", BOUND_S).status == "ok"


BIG_CHARS = 3_500_000


@pytest.mark.parametrize("backend", ["process", "docker-runc"])
def test_interrupts_while_the_main_thread_reads_big_replies_tear_no_frame(
        runtimes: Runtimes) -> None:
    """Row 23d with the new reader role: the main thread reads 3.5 MB replies in 64 KiB
    chunks, a leftover thread calls too (so the main thread is by turns reader and
    waiter), and each cell is interrupted at a random point of that; every interrupt ends
    its cell at once, and the stream stays in step (the next cell's reply is whole)."""
    rt = runtimes(rules=PERMIT_TOOLS, limits={"cell_timeout_s": 8, "memory_mb": 512},
                  budgets={"tree": {"calls": 1_000_000, "max_prompt_chars": 10_000}})
    tools = {"big": lambda: "b" * BIG_CHARS, "small": lambda: 1}
    with watched_session(rt, tools=tools) as (session, _):
        setup = LEFTOVER_SMALL + "kept = 5\n"
        assert exec_bounded(session, setup, BOUND_S).status == "ok"
        for n in range(12):
            timer = threading.Timer(0.01 + n * 0.013, lambda: session.interrupt("review"))
            started = time.monotonic()
            timer.start()
            result = exec_bounded(session, f"while True:\n    assert len(big()) == {BIG_CHARS}\n",
                                  BOUND_S)
            timer.join()
            took = time.monotonic() - started
            assert (result.status, result.error) == (
                "interrupted", "KeyboardInterrupt: the cell was interrupted"), (n, result)
            assert took < 4, (n, took)
            after = exec_bounded(session, "print(len(big()) + kept)", BOUND_S)
            assert (after.status, after.stdout) == ("ok", f"{BIG_CHARS + 5}\n"), (n, after)
        assert exec_bounded(session, "_halt.append(1)", BOUND_S).status == "ok"



FORKING = """
import os
for _ in range(20):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    assert echo(3) == 3
"""


@pytest.mark.parametrize("backend", ["process"])
def test_fork_while_another_thread_reads_or_holds_the_locks_deadlocks_nothing(
        runtimes: Runtimes) -> None:
    """``os.fork`` in model code while a leftover thread holds the reader role, ``_mail``
    or ``_call_lock``: the parent's calls and the next cells go on."""
    rt = runtimes(rules=PERMIT_TOOLS, limits={"cell_timeout_s": 10},
                  budgets={"tree": {"calls": 1_000_000, "max_prompt_chars": 10_000}})
    tools = {"echo": lambda x: x, "small": lambda: 1}
    with watched_session(rt, tools=tools) as (session, _):
        assert exec_bounded(session, LEFTOVER_SMALL + "kept = 2\n", BOUND_S).status == "ok"
        for _ in range(3):
            result = exec_bounded(session, FORKING, BOUND_S)
            assert result.status == "ok", result.error
        after = exec_bounded(session, "print(echo(kept))", BOUND_S)
        assert (after.status, after.stdout) == ("ok", "2\n"), after
        assert exec_bounded(session, "_halt.append(1)", BOUND_S).status == "ok"
