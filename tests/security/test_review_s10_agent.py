"""Review (s10, review_agent): attacks on this morning's agent changes (issue 16: SIGINT's
handler set only when Python's record says it is not the agent's, the result encoded once
with a depth check for deep answers, the main thread draining the output pipes at a cell's
end) that succeed today. Each test performs the attack and asserts the promise; it is
marked ``xfail(strict=True)`` until the agent is fixed (then remove the mark).

The agent is the same code in every backend, so these run on the process backend only.
"""

from __future__ import annotations

import threading
import time

import pytest

from rlmbox.lm.scripted import ScriptedLM
from rlmbox.runtime.runtime import Runtime

from .harness import Runtimes, exec_bounded

BOUND_S = 20.0


@pytest.mark.parametrize("backend", ["process"])
def test_a_sigint_handler_set_through_libc_does_not_spoil_the_next_cells_interrupt(
        runtime: Runtime) -> None:
    """Session.interrupt: the cell gets KeyboardInterrupt and the namespace is kept. A
    cell may spoil its own interrupts; the next cell, which does nothing odd, must not."""
    with runtime.session() as s:
        first = exec_bounded(
            s, "import ctypes\nctypes.CDLL(None).signal(2, ctypes.c_void_p(1))  # SIG_IGN",
            BOUND_S)
        assert first.status == "ok", first.error
        timer = threading.Timer(0.3, s.interrupt)
        timer.start()
        started = time.monotonic()
        try:
            second = exec_bounded(
                s, "import time\nt = time.monotonic()\nwhile time.monotonic() - t < 2.5:\n"
                   "    pass\nprint('ran to the end')", BOUND_S)
        finally:
            timer.cancel()
        took = time.monotonic() - started
    assert "ran to the end" not in second.stdout
    assert second.status == "interrupted"
    assert took < 2.0, f"the interrupt was ignored: the cell took {took:.2f} s"


@pytest.mark.parametrize("backend", ["process"])
def test_an_answer_of_tuples_nested_too_deep_comes_back_as_its_repr(
        runtime: Runtime) -> None:
    """Commit 91fb433: an answer nested over 64 levels comes back as its repr, not a
    broken session. Tuples travel as JSON lists, so they nest in the frame just as deep."""
    with runtime.session() as s:
        r = exec_bounded(s, "v = 1\nfor _ in range(70):\n    v = (v,)\nFINAL(v)", BOUND_S)
        after = exec_bounded(s, "FINAL(7)", BOUND_S)
    assert r.status == "ok", r.error
    assert r.answer == "(" * 70 + "1" + ",)" * 70
    assert after.answer == 7


@pytest.mark.parametrize("backend", ["process"])
@pytest.mark.parametrize("code", [
    "class X:\n    def __repr__(self):\n        raise RuntimeError('no repr')\nFINAL(X())",
    "FINAL(10 ** 5000)",   # json.dumps and repr both refuse ints over 4300 digits
], ids=["repr-raises", "int-over-4300-digits"])
def test_an_answer_that_is_neither_json_nor_repr_able_leaves_the_session_alive(
        runtime: Runtime, code: str) -> None:
    """tests/runtime/test_answer_encoding.py: a non-JSON answer comes back as its repr,
    one that cannot travel is an error result, and the session goes on."""
    with runtime.session() as s:
        r = exec_bounded(s, code, BOUND_S)
        after = exec_bounded(s, "FINAL(7)", BOUND_S)
    assert r.status in ("ok", "error")
    assert after.answer == 7


@pytest.mark.parametrize("backend", ["process"])
def test_a_cells_unfinished_utf8_sequence_does_not_reach_the_next_cells_output(
        runtime: Runtime) -> None:
    """Output is never attributed to another cell: the bytes a cell wrote belong to its
    own result (as U+FFFD when they are not UTF-8), not to the next cell's."""
    with runtime.session() as s:
        first = exec_bounded(s, "import os\nos.write(1, b'a\\xe2\\x82')", BOUND_S)
        second = exec_bounded(s, "import os\nos.write(1, b'\\xacb')", BOUND_S)
    assert first.stdout.startswith("a")
    assert "\u20ac" not in second.stdout, "cell 1's bytes were decoded into cell 2's output"
    assert second.stdout.endswith("b")


@pytest.mark.parametrize("backend", ["process"])
def test_a_stdout_whose_flush_raises_leaves_the_session_alive(runtime: Runtime) -> None:
    """The agent flushes the cell's streams at its end and must survive what they do:
    a cell's error is reported in its result, not as a dead sandbox."""
    with runtime.session() as s:
        r = exec_bounded(s, "import sys\nclass S:\n    def write(self, s):\n        return len(s)\n"
                            "    def flush(self):\n        raise RuntimeError('no flush')\n"
                            "sys.stdout = S()", BOUND_S)
        after = exec_bounded(s, "FINAL(7)", BOUND_S)
    assert r.status in ("ok", "error")
    assert after.answer == 7


_INTERRUPT_WHILE_SENDING = """import signal, threading, time
main, tid = threading.get_ident(), threading.main_thread().native_id
def interrupter():
    t = time.monotonic()
    while time.monotonic() - t < 1:
        with open(f'/proc/self/task/{tid}/syscall') as f:
            if f.read().split(' ', 1)[0] in ('1', '20', '46'):   # write, writev, sendmsg
                signal.pthread_kill(main, signal.SIGINT)   # what the flood stop sends
                return
threading.Thread(target=interrupter, daemon=True).start()
big = 'p' * 4_000_000
t = time.monotonic()
while time.monotonic() - t < 1.2:
    llm_query(big)
"""


@pytest.mark.parametrize("backend", ["process"])
def test_an_interrupt_landing_while_the_agent_sends_a_call_keeps_the_session(
        runtimes: Runtimes) -> None:
    """Row 23 / Session.interrupt: an interrupted cell keeps the namespace. The SIGINT
    here is the one the flood stop (or the host) sends, timed to land while the agent
    writes a large llm_query frame; it tears that frame (the flood stop alone hits this
    window about one time in three)."""
    rt = runtimes(budgets={"tree": {"calls": 1000, "max_prompt_chars": 10**8,
                                    "input_tokens": 10**12}})
    with rt.session() as s:
        exec_bounded(s, "x = 1", BOUND_S)
        r = exec_bounded(s, _INTERRUPT_WHILE_SENDING, BOUND_S, timeout=2)
        after = exec_bounded(s, "FINAL(x)", BOUND_S)
    assert r.status == "interrupted", r.error
    assert after.answer == 1


_INTERRUPT_WHILE_READING = """import signal, threading, time
main = threading.get_ident()
def interrupter():
    time.sleep({delay})   # most of each call is the agent taking in the 3 MB reply
    signal.pthread_kill(main, signal.SIGINT)
threading.Thread(target=interrupter, daemon=True).start()
while True:
    llm_query('p')
"""


@pytest.mark.parametrize("backend", ["process"])
def test_an_interrupt_landing_while_the_agent_reads_a_reply_keeps_the_session(
        runtimes: Runtimes) -> None:
    """The read side of the test above: a 3 MB reply comes in 64 KiB reads, and an
    interrupt landing between a read and the decoder's feed lost those bytes (the stream
    out of step, the session killed at the cell's wall time). Now it waits for the frame."""
    rt = runtimes(lm=ScriptedLM(default="r" * 3_000_000),
                  budgets={"tree": {"calls": 1000, "output_tokens": 10**12}})
    with rt.session() as s:
        exec_bounded(s, "x = 1", BOUND_S)
        for delay in range(12):   # landing at a different point of a reply each time
            r = exec_bounded(s, _INTERRUPT_WHILE_READING.format(delay=0.1 + delay * 0.0137),
                             BOUND_S, timeout=2)
            assert r.status == "interrupted", r.error
        after = exec_bounded(s, "FINAL(x)", BOUND_S)
    assert after.answer == 1


@pytest.mark.parametrize("backend", ["process"])
def test_an_answer_dict_whose_get_raises_is_the_cells_error(runtime: Runtime) -> None:
    """review s10 A3: ``answer`` set to a dict subclass whose ``get`` raises ended the agent
    (the session killed); now the cell reports the error and the session goes on."""
    with runtime.session() as session:
        result = session.exec(
            "class D(dict):\n    def get(self, *a):\n        raise RuntimeError('no')\n"
            "answer = D(ready=True)")
        assert result.status == "error", result
        assert "RuntimeError: no" in (result.error or "")
        assert session.exec("answer = None").status == "ok"   # the session lives on
