"""The live display of ``rlmbox run`` and ``rlmbox demo`` on a terminal (``rich``).

It is an observer of the runtime's audit stream (every session of the tree, so
``rlm_query`` children and their calls show up as they happen) plus the RLM loop's
callbacks (the root model's words, each cell's code and its output as it streams). The
bottom of the screen is live: the current step and cell, the latest host calls with their
cost, and budget bars; finished cells scroll above it; a summary closes the run.
Everything a sandbox or a model produced goes through ``terminal_safe`` and is shown as
plain text (no markup), so it cannot drive the terminal.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from rlmbox.cli.terminal import terminal_safe
from rlmbox.policies.model import TreeBudget
from rlmbox.runtime.results import ExecResult
from rlmbox.runtime.rlm_loop import CODE_BLOCK

OUTPUT_LINES = 12
RECENT_CALLS = 8


@dataclass(frozen=True)
class _Call:
    depth: int
    function: str
    outcome: str
    tokens: int
    cost_usd: float
    latency_ms: float


class LiveDisplay:
    """Shows one RLM run as it goes. Use as a context manager around the run."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self._budget = TreeBudget()
        self._lock = threading.Lock()
        self._step = 0
        self._reply: list[str] = []
        self._code = ""
        self._output: collections.deque[str] = collections.deque(maxlen=OUTPUT_LINES)
        self._partial = ""
        self._cell_started: float | None = None
        self._calls: collections.deque[_Call] = collections.deque(maxlen=RECENT_CALLS)
        self._usage: dict[str, Any] = {}
        self._counts = collections.Counter[str]()
        self._started = time.monotonic()
        self._live = Live(self, console=self.console, refresh_per_second=8, transient=True)

    def __enter__(self) -> LiveDisplay:
        self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.stop()

    # --- the audit stream (runtime/observe.py's Observer) -------------------------------

    def record(self, record: Mapping[str, Any]) -> None:
        event = record.get("event")
        with self._lock:
            if event == "session.create":
                self._counts["sessions"] += 1
            elif event == "cell.result":
                self._counts["cells"] += 1
            elif event == "host.call":
                self._host_call(record)
            elif event in ("limit.exceeded", "sandbox.killed"):
                self._counts["limits"] += 1

    def audit_synced(self, seconds: float) -> None:
        """Sync timing is for metrics."""

    def audit_failed(self) -> None:
        with self._lock:
            self._counts["audit_failures"] += 1

    def _host_call(self, record: Mapping[str, Any]) -> None:
        self._counts["calls"] += 1
        tokens = _number(record.get("tokens_in")) + _number(record.get("tokens_out"))
        self._calls.append(_Call(
            depth=int(_number(record.get("depth"))),
            function=terminal_safe(str(record.get("function", "?")))[:40],
            outcome=str(record.get("outcome", "?")), tokens=int(tokens),
            cost_usd=_number(record.get("cost_usd")),
            latency_ms=_number(record.get("latency_ms"))))
        budget = record.get("budget_after")
        if isinstance(budget, Mapping) and isinstance(budget.get("tree"), Mapping):
            self._usage = dict(budget["tree"])

    # --- the RLM loop's callbacks -------------------------------------------------------

    def begin(self, header: str, budget: TreeBudget) -> None:
        """The run's session started: name it, and draw bars against its tree budget."""
        with self._lock:
            self._budget = budget
        self.console.print(Text(header, style="bold"))

    def reply(self, step: int, reply: str) -> None:
        prose = [terminal_safe(line) for line in CODE_BLOCK.sub("", reply).splitlines()
                 if line.strip()]
        with self._lock:
            self._step, self._reply = step, prose
        self.console.print(Text(f"── step {step} · root model", style="bold cyan"))
        for line in prose:
            self.console.print(Text(f"  {line}"))

    def cell_start(self, step: int, code: str) -> None:
        with self._lock:
            self._code = code
            self._output.clear()
            self._partial = ""
            self._cell_started = time.monotonic()

    def output(self, stream: str, text: str) -> None:
        with self._lock:
            lines = (self._partial + text).split("\n")
            self._partial = lines.pop()
            self._output.extend(("! " if stream == "stderr" else "") + terminal_safe(line)
                                for line in lines)

    def cell_done(self, step: int, code: str, result: ExecResult) -> None:
        with self._lock:
            self._cell_started = None
            self._code = ""
        style = "green" if result.status == "ok" else "red"
        body: list[RenderableType] = [Syntax(_safe_code(code), "python", theme="ansi_dark",
                                             background_color="default")]
        shown = "\n".join(terminal_safe(line) for line in result.stdout.splitlines())
        if shown:
            body.append(Text(shown, style="dim"))
        if result.error:
            body.append(Text(terminal_safe(result.error), style="red"))
        self.console.print(Panel(
            Group(*body), title=Text(f"step {step} · cell", style="bold"), title_align="left",
            subtitle=Text(f"{result.status} · {result.duration_s * 1000:.0f} ms · "
                          f"{result.host_calls} host call(s)", style=style),
            subtitle_align="right", border_style=style))

    def summary(self, answered: bool, answer: Any, audit_path: object) -> None:
        """The closing table: what the run did and what it cost."""
        with self._lock:
            usage, counts = dict(self._usage), collections.Counter(self._counts)
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        shown = answer if isinstance(answer, str) else repr(answer)
        table.add_row("answer", Text(terminal_safe(shown) if answered else "none",
                                     style="bold green" if answered else "bold red"))
        table.add_row("steps", str(self._step))
        table.add_row("cells", str(counts["cells"]))
        table.add_row("sessions", f"{counts['sessions']} (1 root + "
                                  f"{max(0, counts['sessions'] - 1)} rlm_query)")
        table.add_row("host calls", str(counts["calls"]))
        table.add_row("tokens", f"{usage.get('input_tokens', 0)} in, "
                                f"{usage.get('output_tokens', 0)} out")
        table.add_row("cost", f"${_number(usage.get('cost_usd')):.4f}")
        table.add_row("limits hit", str(counts["limits"]))
        table.add_row("time", f"{time.monotonic() - self._started:.1f} s")
        table.add_row("audit log", Text(str(audit_path)))
        self.console.print(Panel(table, title="summary", title_align="left",
                                 border_style="green" if answered else "red"))

    # --- the live part ------------------------------------------------------------------

    def __rich__(self) -> RenderableType:
        with self._lock:
            return Group(self._now(), self._call_table(), self._bars())

    def _now(self) -> RenderableType:
        if self._cell_started is None:
            status = f"step {self._step} · waiting for the root model" if self._step else \
                "starting"
            return Text(status, style="bold yellow")
        elapsed = time.monotonic() - self._cell_started
        output = "\n".join([*self._output, terminal_safe(self._partial)]).strip("\n")
        return Panel(Group(Syntax(_safe_code(self._code), "python", theme="ansi_dark",
                                  background_color="default"),
                           Text(output or "…", style="dim")),
                     title=Text(f"step {self._step} · cell running {elapsed:.1f} s",
                                style="bold yellow"), title_align="left",
                     border_style="yellow")

    def _call_table(self) -> RenderableType:
        table = Table(title="host calls (latest)", title_justify="left", expand=False,
                      show_edge=False, box=None, padding=(0, 1))
        for column in ("depth", "function", "outcome", "tokens", "cost", "ms"):
            table.add_column(column, justify="right" if column in
                             ("depth", "tokens", "cost", "ms") else "left")
        for call in self._calls:
            table.add_row(str(call.depth), call.function,
                          Text(call.outcome, style="green" if call.outcome == "ok" else "red"),
                          str(call.tokens), f"${call.cost_usd:.4f}", f"{call.latency_ms:.0f}")
        return table

    def _bars(self) -> RenderableType:
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="bold")
        grid.add_column(width=30)
        grid.add_column()
        limits = {"calls": self._budget.calls, "input_tokens": self._budget.input_tokens,
                  "output_tokens": self._budget.output_tokens,
                  "cost_usd": self._budget.cost_usd}
        for name, limit in limits.items():
            used = _number(self._usage.get(name))
            shown = f"${used:.4f} / ${limit:.2f}" if name == "cost_usd" else \
                f"{used:,.0f} / {limit:,.0f}"
            grid.add_row(name, ProgressBar(total=float(limit) or 1.0, completed=used), shown)
        return Panel(grid, title="budget (whole tree)", title_align="left")


def _safe_code(code: str) -> str:
    """The model's code, each line terminal-safe (tabs and newlines kept)."""
    return "\n".join(terminal_safe(line) for line in code.splitlines())


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else 0.0
