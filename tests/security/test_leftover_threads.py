"""A thread an earlier cell left calling host functions never takes a later cell's frames.

The agent's threads all read the one protocol stream: a thread waiting for its call's reply
dropped every other frame it read. A thread that outlived its cell (an RLM's
``llm_query`` pool left running, or one whose ``join`` an interrupt cut short) read the
next cell's exec frame and dropped it: the cell never began and was killed at its wall
time (``test_review_s11.py::test_an_interrupt_reaches_a_cell_whose_thread_is_reading_a_reply``
failed on it in CI: about 1 try in 200). Threads read the stream only inside a host call,
one at a time; a cell now ends only once the calls its threads have in flight are
answered, and a call started between cells is refused (RuntimeError), so between cells no
thread reads. (A first fix routed every frame to its thread through a Condition; review
s13c broke it: a KeyboardInterrupt inside the Condition's Python code left it locked.)
"""

from __future__ import annotations

import pytest

from .harness import Runtimes, exec_bounded, watched_session

PERMIT_TOOLS = [{"id": "permit-tools", "effect": "permit", "function": "tool.*"}]
BOUND_S = 20.0

LEFTOVER = """
import threading
_halt = []
def _pester(halt=_halt):
    while not halt:
        try:
            small()
        except Exception:
            pass
threading.Thread(target=_pester, daemon=True).start()
"""


@pytest.mark.parametrize("backend", ["process", "docker-runc"])
def test_a_thread_left_calling_host_functions_takes_no_later_cells_frames(
        runtimes: Runtimes) -> None:
    rt = runtimes(rules=PERMIT_TOOLS, limits={"cell_timeout_s": 5},
                  budgets={"tree": {"calls": 1_000_000, "max_prompt_chars": 10_000}})
    with watched_session(rt, tools={"small": lambda: 1, "echo": lambda x: x}) as (session, _):
        assert exec_bounded(session, LEFTOVER, BOUND_S).status == "ok"
        for n in range(30):
            # an exec frame, and the main thread's own calls' replies, with the thread on
            result = exec_bounded(session, f"print(echo({n}))", BOUND_S)
            assert (result.status, result.stdout) == ("ok", f"{n}\n"), (n, result)
        assert exec_bounded(session, "_halt.append(1)", BOUND_S).status == "ok"
