"""Nested batches cannot starve each other: ``rlm_query_batched`` whose children call
``llm_query_batched`` returns within the cell's wall time, on every backend.

The attack is the one that deadlocked the host: every outer item holds a host thread
while its child session waits for threads of its own. Batches now run on threads of
their own, and the tree's ``budgets.tree.max_concurrent`` refuses (never queues) what
goes past it, so nothing waits on a slot another waiter holds.
"""

from __future__ import annotations

import time
from typing import Any

from rlmbox.lm.scripted import ScriptedLM

from .harness import Runtimes, events, exec_bounded, watched_session

CELL_S = 20
GRACE_S = 1.0
SLACK_S = 10.0
OUTER = 8
CHILD_RLM = ("```repl\n"
             "r = llm_query_batched([context + ' a', context + ' b'])\n"
             "FINAL(' | '.join(r))\n"
             "```")
NESTED = f"r = rlm_query_batched(['p%d' % i for i in range({OUTER})])\nprint(repr(r))"


def _runtime(runtimes: Runtimes, max_concurrent: int) -> Any:
    rt = runtimes(
        limits={"cell_timeout_s": CELL_S},
        rules=[{"id": f"permit-{fn}", "effect": "permit", "function": fn}
               for fn in ("rlm_query_batched", "llm_query_batched")],
        budgets={"tree": {"calls": 200, "max_depth": 1, "max_concurrent": max_concurrent}})
    rt.rlm_lm = ScriptedLM(lambda prompt: CHILD_RLM)
    return rt


def _answers(stdout: str) -> list[str]:
    answers: list[str] = eval(stdout.strip(), {"__builtins__": {}})  # noqa: S307 - a repr
    return answers


def test_nested_batches_return_within_the_cell(runtimes: Runtimes) -> None:
    """8 recursive children, each batching 2 sub-calls, under a tree limit that fits them
    all: every child answers, within the cell's wall time."""
    rt = _runtime(runtimes, max_concurrent=OUTER * 4)   # rlm + its root turn + 2 leaves
    with watched_session(rt) as (session, _):
        started = time.monotonic()
        result = exec_bounded(session, NESTED, CELL_S + GRACE_S + SLACK_S)
        elapsed = time.monotonic() - started
        assert result.status == "ok", (result.status, result.error)
        assert elapsed < CELL_S + GRACE_S, f"the cell took {elapsed:.1f} s"
        answers = _answers(result.stdout)
        assert answers == ["lm-answer | lm-answer"] * OUTER, answers


def test_nested_batches_past_the_concurrency_limit_are_refused(runtimes: Runtimes) -> None:
    """Under ``max_concurrent: 8`` the 8 outer items hold every slot when the first child
    calls: its batch is refused at once with a BudgetExceeded naming the limit instead of
    waiting; children that call after others ended get slots."""
    rt = _runtime(runtimes, max_concurrent=OUTER)
    with watched_session(rt) as (session, _):
        result = exec_bounded(session, NESTED, CELL_S + GRACE_S + SLACK_S)
        assert result.status == "ok", (result.status, result.error)
        answers = _answers(result.stdout)
        assert len(answers) == OUTER
        refusal = ("Error: BudgetExceeded: tree budget 'max_concurrent' exhausted: "
                   f"{OUTER} of {OUTER} calls in flight")
        # a child refused its root-model turn fails whole; one racing another may get one
        # of its two sub-calls
        items = [item for answer in answers for item in answer.split(" | ")]
        assert set(items) <= {"lm-answer", refusal}, answers
        assert refusal in items, answers
        assert events(rt, "limit.exceeded", budget="tree.max_concurrent")
        assert session.ledger.snapshot()["tree"]["in_flight"] == 0
