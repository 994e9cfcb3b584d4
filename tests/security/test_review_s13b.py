"""Hostile review s13b of the interrupt (security.md 23f, daemon.md "Interrupting a cell").

Promise attacked: an interrupting thread (a daemon server thread) is never held up by a
sandbox that stops reading. s12/s13 made the interrupt go without the send lock when a
reply is being written to a sandbox that does not read it. Here the sandbox does not read
at all and takes no reply: its cell ignores SIGINT and sleeps, and the host's own
interrupt frames, each written whole (a pipe write under PIPE_BUF is all or nothing),
fill the pipe. The send lock is then free, so each interrupt takes it and waits
INTERRUPT_FRAME_WAIT_S for room that never comes. Real sandbox (process backend: a plain
pipe, 64 KiB, filled by ~1700 frames).
"""

from __future__ import annotations

import threading
import time

import pytest

from rlmbox.runtime.results import ExecResult

from .harness import Runtimes, exec_bounded, watched_session

BOUND_S = 20.0
# ignores SIGINT and never reads its frames (no host call), then ends by itself
_DEAF = ("import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
         "time.sleep(6)\nprint('done')\n")
HELD_S = 0.5


@pytest.mark.xfail(strict=True, reason="review s13b: once the sandbox's pipe is full of the "
                   "host's own interrupt frames, every interrupt() takes the free send lock "
                   "and waits INTERRUPT_FRAME_WAIT_S (1 s) to write one more "
                   "(_deliver_due_locked -> _signal_cell_locked)")
@pytest.mark.parametrize("backend", ["process"])
def test_a_sandbox_that_reads_nothing_holds_no_interrupting_thread_up(
        runtimes: Runtimes) -> None:
    rt = runtimes(limits={"cell_timeout_s": 15.0})
    with watched_session(rt) as (session, _):
        exec_bounded(session, "kept = 41", BOUND_S)
        box: dict[str, ExecResult] = {}
        worker = threading.Thread(target=lambda: box.update(r=session.exec(_DEAF)))
        worker.start()
        time.sleep(0.5)   # the cell has ignored SIGINT and sleeps
        took: list[float] = []
        held: list[float] = []
        while worker.is_alive() and len(took) < 5000 and len(held) < 3:
            asked = time.monotonic()
            assert session.interrupt("test")
            took.append(time.monotonic() - asked)
            if took[-1] > HELD_S:
                held.append(took[-1])
        worker.join(BOUND_S)
        after = exec_bounded(session, "print(kept)", BOUND_S)
    print(f"{len(took)} interrupts, held: {held}")
    assert box["r"].stdout == "done\n", box["r"]   # it ignored them all, as it may
    assert after.stdout == "41\n", after
    assert len(took) > 100   # the pipe took many frames first
    assert not held, f"interrupt() held up {held} s after {len(took)} calls"


@pytest.mark.parametrize("backend", ["process"])
def test_interrupts_of_a_sandbox_that_reads_answer_at_once(runtimes: Runtimes) -> None:
    """Held, the control of the case above: a cell that ignores SIGINT but makes a host
    call now and then (the agent reads the pipe, and the interrupt frames in it) gets
    3000 interrupts, none of them held up, and the session goes on."""
    rt = runtimes(limits={"cell_timeout_s": 15.0})
    code = _DEAF.replace("time.sleep(6)",
                         "end = time.monotonic() + 6\nwhile time.monotonic() < end:\n"
                         "    time.sleep(0.05)\n    try:\n        llm_query('p')\n"
                         "    except Exception:\n        pass")
    with watched_session(rt) as (session, _):
        exec_bounded(session, "kept = 41", BOUND_S)
        box: dict[str, ExecResult] = {}
        worker = threading.Thread(target=lambda: box.update(r=session.exec(code)))
        worker.start()
        time.sleep(0.5)
        took: list[float] = []
        while worker.is_alive() and len(took) < 3000:
            asked = time.monotonic()
            session.interrupt("test")
            took.append(time.monotonic() - asked)
        worker.join(BOUND_S)
        after = exec_bounded(session, "print(kept)", BOUND_S)
    assert len(took) == 3000, len(took)
    assert max(took) < HELD_S, max(took)
    assert after.stdout == "41\n", after
