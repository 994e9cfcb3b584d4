"""A minimal RLM driver: the root model writes code, the sandbox runs it, until an answer.

This is what ``rlmbox run`` executes. The root model sees the task and the outputs of its
earlier cells, never the context itself (that lives in the sandbox as ``context``). Code
comes from fenced ```repl (or ```python) blocks in its reply; an answer comes from the
sandbox (``FINAL``/``FINAL_VAR``/``answer`` dict) or from a ``FINAL(...)`` line in the
reply outside code.

The conversation is a system prompt (instructions and task), then turns: the root's
replies and the cells' outputs. Each turn only appends, so every request's prefix is the
previous request; it is marked for prompt caching (``cache_prefix``), and a provider that
caches (Anthropic's ``cache_control``; OpenAI-compatible servers on their own) bills the
resent history at the cache-read rate.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rlmbox.lm.base import CallOptions, LMProvider, LMRequest, TextSink, Turn
from rlmbox.runtime.results import ExecResult
from rlmbox.runtime.session import OutputCallback, Session

CODE_BLOCK = re.compile(r"```(?:repl|python)\s*\n(.*?)```", re.DOTALL)
_FINAL_LINE = re.compile(r"^\s*FINAL\((.*)\)\s*$", re.MULTILINE)
_FEEDBACK_CHARS = 4000

SYSTEM_PROMPT = """You are a Recursive Language Model. A Python REPL holds the input as the
variable `context` ({context_kind}, {context_chars} characters). Write code in ```repl blocks
to inspect it; call llm_query(prompt) to ask a sub-model about a piece. When you know the
answer, call FINAL(answer) in code. Task: {task}"""
FIRST_TURN = "Begin: write your first ```repl block."
NO_CODE_TURN = "[no code ran] Write a ```repl block, or FINAL(answer) in one."


@dataclass
class Step:
    """One turn: what the root model said, the cells it ran, and their results."""

    reply: str
    cells: list[tuple[str, ExecResult]] = field(default_factory=list)


@dataclass
class Trajectory:
    task: str
    steps: list[Step] = field(default_factory=list)
    answer: Any = None
    answered: bool = False


def extract_code(reply: str) -> list[str]:
    return [block.strip("\n") for block in CODE_BLOCK.findall(reply)]


def run_rlm(session: Session, root: LMProvider, task: str, *, context: Any, max_steps: int = 8,
            on_cell: Callable[[int, str, ExecResult], None] | None = None,
            model: str | None = None,
            on_reply: Callable[[int, str], None] | None = None,
            on_text: TextSink | None = None,
            options: CallOptions | None = None,
            on_cell_start: Callable[[int, str], None] | None = None,
            on_output: OutputCallback | None = None) -> Trajectory:
    """Drives the root model against the session until an answer or ``max_steps``.

    ``on_reply``, ``on_cell_start``, ``on_output`` (the cell's output as it streams,
    see :meth:`Session.exec`) and ``on_cell`` let a caller show the run as it goes.

    Each root completion passes the session's dispatcher (budgeted as ``root_lm``, audited
    before and after), so it raises ``BudgetExceeded`` once the tree's budget is spent.
    ``on_text`` receives the root's replies as they stream; ``options`` are its per-call
    parameters (max_tokens, temperature, stop).
    """
    trajectory = Trajectory(task=task)
    system = SYSTEM_PROMPT.format(
        context_kind=type(context).__name__,
        context_chars=len(context) if isinstance(context, str | list | dict) else 0, task=task)
    turns = [Turn("user", FIRST_TURN)]
    for number in range(1, max_steps + 1):
        request = LMRequest(tuple(turns), system=system, options=options or CallOptions(),
                            cache_prefix=True)
        reply = session.dispatcher.complete_root(root, request,
                                                 model=root.model if model is None else model,
                                                 on_text=on_text)
        turns.append(Turn("assistant", reply or "(empty reply)"))
        feedback: list[str] = []
        step = Step(reply=reply)
        trajectory.steps.append(step)
        if on_reply is not None:
            on_reply(number, reply)
        for code in extract_code(reply):
            if on_cell_start is not None:
                on_cell_start(number, code)
            result = session.exec(code, on_output=on_output)
            step.cells.append((code, result))
            if on_cell is not None:
                on_cell(number, code, result)
            feedback.append(f"[cell]\n{code}\n[output]\n{result.stdout[-_FEEDBACK_CHARS:]}"
                            f"{result.error or ''}")
            if result.has_answer:
                trajectory.answer, trajectory.answered = result.answer, True
                return trajectory
            if result.status == "killed":
                return trajectory
        final = _FINAL_LINE.search(CODE_BLOCK.sub("", reply))
        if final:
            trajectory.answer, trajectory.answered = final.group(1).strip(" '\""), True
            return trajectory
        turns.append(Turn("user", "\n\n".join(feedback) or NO_CODE_TURN))
    return trajectory
