"""Renders the README's picture of ``rlmbox demo``'s live display (docs/run-live.svg).

Runs the real demo (process sandbox, scripted models) through the same LiveDisplay the
CLI uses, on a recording console: the cells and summary as they scroll, and one frame of
the live region (latest host calls, budget bars) as it stood before the summary.

    PYTHONPATH=. python scripts/run_screenshot.py [docs/run-live.svg]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from rich.console import Console

from rlmbox.cli.display import header_line
from rlmbox.cli.live import LiveDisplay
from rlmbox.cli.run_task import _DEMO_ROOT_REPLIES, _demo_context, _demo_sub_lm
from rlmbox.lm.scripted import ScriptedLM
from rlmbox.runtime.rlm_loop import run_rlm
from rlmbox.runtime.runtime import Runtime


def main(output: Path) -> None:
    console = Console(record=True, width=104, force_terminal=True, color_system="truecolor")
    display = LiveDisplay(console)
    context = _demo_context()
    with tempfile.TemporaryDirectory() as audit, \
            Runtime("default", lm=ScriptedLM(_demo_sub_lm), audit_dir=audit, pool_size=0,
                    observers=[display]) as rt, rt.session(context=context) as session:
        display.begin(header_line(rt, session), rt.policy.budgets.tree)
        trajectory = run_rlm(session, ScriptedLM(_DEMO_ROOT_REPLIES),
                             "What is the secret code?", context=context, max_steps=4,
                             on_reply=display.reply, on_cell_start=display.cell_start,
                             on_output=display.output, on_cell=display.cell_done)
        console.print(display)
        display.summary(trajectory.answered, trajectory.answer, "audit/audit.jsonl")
    console.save_svg(str(output), title="rlmbox demo")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/run-live.svg"))
