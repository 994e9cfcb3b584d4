"""``rlmbox run`` (an RLM task under a policy) and ``rlmbox demo`` (the same, offline)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlmbox.cli.display import header_line, print_answer, print_header
from rlmbox.cli.inputs import add_context_arguments, read_context
from rlmbox.cli.terminal import terminal_safe
from rlmbox.lm.base import LMProvider
from rlmbox.lm.hosted import register_secrets
from rlmbox.lm.scripted import ScriptedLM
from rlmbox.lm.spec import SPEC_HELP, provider_from_spec
from rlmbox.runtime.results import ExecResult
from rlmbox.runtime.rlm_loop import Trajectory, run_rlm
from rlmbox.runtime.runtime import Runtime

if TYPE_CHECKING:
    from rlmbox.cli.live import LiveDisplay

_DEMO_ROOT_REPLIES = [
    "Let me look at the context first.\n```repl\nlines = context.splitlines()\n"
    "print(len(context), 'characters,', len(lines), 'lines')\nprint(lines[0])\n```",
    "I'll ask a sub-model about each chunk, in parallel.\n```repl\n"
    "chunks = ['\\n'.join(lines[i:i + 500]) for i in range(0, len(lines), 500)]\n"
    "replies = llm_query_batched([\n"
    "    'Reply with the secret code in this text, or NONE.\\n' + c for c in chunks])\n"
    "print(replies)\nfound = [r for r in replies if r != 'NONE']\n"
    "FINAL(found[0] if found else 'not found')\n```",
]


def _demo_context() -> str:
    lines = [f"Log line {i}: routine status report, all systems nominal." for i in range(2000)]
    lines[1337] = "Log line 1337: the secret code is 7341."
    return "\n".join(lines)


def _demo_sub_lm(prompt: str) -> str:
    match = re.search(r"secret code is (\d+)", prompt)
    return match.group(1) if match else "NONE"


def register(subparsers: Any) -> None:
    run_parser = subparsers.add_parser("run", help="run an RLM task in a sandboxed session")
    run_parser.add_argument("task", help="what the root model should find out")
    run_parser.add_argument("--policy", default="default", help="preset name or policy file")
    add_context_arguments(run_parser, required=True)
    run_parser.add_argument("--root-lm", required=True, metavar="SPEC",
                            help=f"the root model: {SPEC_HELP}")
    run_parser.add_argument("--lm", default=None, metavar="SPEC",
                            help=f"the sub-model answering llm_query (default: the root "
                                 f"model): {SPEC_HELP}")
    run_parser.add_argument("--allow-unpriced", action="store_true",
                            help="count models with no known price as 0 USD against the "
                                 "policy's cost budget (default: refuse them)")
    run_parser.add_argument("--backend", default=None)
    run_parser.add_argument("--max-steps", type=int, default=8)
    run_parser.add_argument("--audit-dir", type=Path, default=None)
    run_parser.add_argument("--json", action="store_true",
                            help="print the whole trajectory as one JSON object at the end")
    run_parser.set_defaults(handler=run)
    demo = subparsers.add_parser(
        "demo", help="an offline RLM run: find a needle in 2,000 lines (process sandbox)")
    demo.add_argument("--policy", default="default")
    demo.add_argument("--audit-dir", type=Path, default=None)
    demo.set_defaults(handler=run_demo)


class _StreamedReplies:
    """Shows the root model's reply as it streams (``on_text``), under a step header; the
    reply's end (``on_reply``) closes it. Metering and audit do not depend on it."""

    def __init__(self) -> None:
        self._step = 1
        self._open = False

    def text(self, chunk: str) -> None:
        if not self._open:
            print(f"\n── step {self._step} · root model")
            self._open = True
        sys.stdout.write(chunk)
        sys.stdout.flush()

    def reply(self, step: int, reply: str) -> None:
        if self._open:
            print()
        self._step, self._open = step + 1, False


def _print_cell(step: int, code: str, result: ExecResult) -> None:
    print(f"── step {step} · cell [{result.status}, {result.duration_s * 1000:.1f} ms, "
          f"{result.host_calls} host call(s)]")
    for line in code.splitlines():
        print(f"  >>> {terminal_safe(line)}")
    for line in result.stdout.splitlines():
        print(f"  {terminal_safe(line)}")
    if result.error:
        print(f"  {terminal_safe(result.error)}")


def _trajectory_json(trajectory: Trajectory, rt: Runtime, session_id: str) -> str:
    return json.dumps({
        "task": trajectory.task, "answered": trajectory.answered, "answer": trajectory.answer,
        "policy": rt.policy.name, "policy_sha256": rt.policy.sha256, "session": session_id,
        "audit_log": str(rt.audit_path),
        "steps": [{"reply": step.reply, "cells": [
            {"code": code, "status": r.status, "stdout": r.stdout, "stderr": r.stderr,
             "error": r.error, "duration_s": r.duration_s, "host_calls": r.host_calls}
            for code, r in step.cells]} for step in trajectory.steps]}, default=repr)


def _live_display(as_json: bool) -> LiveDisplay | None:
    """The live display on a terminal; plain lines elsewhere or with --json (or without
    rich installed)."""
    if as_json or not sys.stdout.isatty():
        return None
    try:
        from rlmbox.cli.live import LiveDisplay  # noqa: PLC0415 - only on a terminal
    except ImportError:
        return None
    return LiveDisplay()


def _drive_live(rt: Runtime, display: LiveDisplay, root: LMProvider, task: str,
                context: Any, backend: str | None, max_steps: int) -> int:
    with display, rt.session(context=context, backend=backend) as session:
        display.begin(header_line(rt, session), rt.policy.budgets.tree)
        trajectory = run_rlm(session, root, task, context=context, max_steps=max_steps,
                             on_reply=display.reply, on_cell_start=display.cell_start,
                             on_output=display.output, on_cell=display.cell_done)
    display.summary(trajectory.answered, trajectory.answer, rt.audit_path)
    return 0 if trajectory.answered else 1


def _drive(rt: Runtime, root: LMProvider, task: str, context: Any, backend: str | None,
           max_steps: int, *, as_json: bool = False, display: LiveDisplay | None = None
           ) -> int:
    if display is not None:
        return _drive_live(rt, display, root, task, context, backend, max_steps)
    with rt.session(context=context, backend=backend) as session:
        if not as_json:
            print_header(rt, session)
        shown = None if as_json else _StreamedReplies()
        trajectory = run_rlm(session, root, task, context=context, max_steps=max_steps,
                             on_cell=None if as_json else _print_cell,
                             on_reply=shown.reply if shown else None,
                             on_text=shown.text if shown else None)
    if as_json:
        print(_trajectory_json(trajectory, rt, session.id))
        return 0 if trajectory.answered else 1
    print()
    if trajectory.answered:
        print_answer(trajectory.answer)
    else:
        print(f"no answer after {len(trajectory.steps)} step(s)")
    print(f"audit log: {rt.audit_path}  (verify: rlmbox audit verify {rt.audit_path})")
    return 0 if trajectory.answered else 1


def run(args: argparse.Namespace) -> int:
    context = read_context(args.context, args.context_format)
    root = provider_from_spec(args.root_lm, allow_unpriced=args.allow_unpriced)
    sub = provider_from_spec(args.lm, allow_unpriced=args.allow_unpriced) if args.lm else root
    display = _live_display(args.json)
    with Runtime(args.policy, lm=sub, audit_dir=args.audit_dir, pool_size=0,
                 observers=[display] if display else ()) as rt:
        register_secrets(rt.audit, root)   # the runtime registered the sub-model's key
        return _drive(rt, root, args.task, context, args.backend, args.max_steps,
                      as_json=args.json, display=display)


def run_demo(args: argparse.Namespace) -> int:
    context = _demo_context()
    display = _live_display(as_json=False)
    with Runtime(args.policy, lm=ScriptedLM(_demo_sub_lm), audit_dir=args.audit_dir,
                 pool_size=0, observers=[display] if display else ()) as rt:
        code = _drive(rt, ScriptedLM(_DEMO_ROOT_REPLIES), "What is the secret code?",
                      context, None, 4, display=display)
    sys.stdout.flush()
    return code
