"""The budget of a session tree draining over time, as an inline SVG (no script, no fetch).

Each ``host.call`` outcome carries the tree's ledger after it (``budget_after.tree``):
calls, input and output tokens, cost. Those totals only grow, so a long run is thinned to
at most ``MAX_POINTS`` by keeping the last point of each stretch; the final values are
exact. Each series is scaled to its own maximum, printed in the legend. Budget refusals
(``limit.exceeded`` with a ``budget``) are red ticks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rlmbox.audit.view.escape import esc
from rlmbox.audit.view.trajectory import number_field, text_field

MAX_POINTS = 400
_WIDTH, _HEIGHT, _LEFT, _RIGHT, _TOP, _BOTTOM = 640, 170, 10, 10, 10, 40
#: series name -> (label, colour)
SERIES = {"calls": ("calls", "#1f6feb"), "tokens": ("tokens in+out", "#8250df"),
          "cost": ("cost (USD)", "#bf8700")}


@dataclass(frozen=True, slots=True)
class BudgetPoint:
    """The tree's totals after one host call, ``t`` seconds after the tree began."""

    t: float
    calls: float
    tokens: float
    cost: float


def _timestamp(record: Mapping[str, Any]) -> float | None:
    ts = text_field(record, "ts")
    try:
        return datetime.fromisoformat(ts).timestamp() if ts else None
    except ValueError:
        return None


def budget_points(records: Iterable[Mapping[str, Any]]) -> tuple[list[BudgetPoint], list[float]]:
    """The totals after each host call of one tree, and the times budgets were refused."""
    points: list[BudgetPoint] = []
    refusals: list[float] = []
    start: float | None = None
    for record in records:
        when = _timestamp(record)
        if when is None:
            continue
        start = when if start is None else start
        if record.get("event") == "limit.exceeded" and "budget" in record:
            refusals.append(when - start)
            continue
        after = record.get("budget_after")
        tree = after.get("tree") if isinstance(after, dict) else None
        if record.get("event") != "host.call" or not isinstance(tree, dict):
            continue
        points.append(BudgetPoint(
            when - start, number_field(tree, "calls") or 0.0,
            (number_field(tree, "input_tokens") or 0.0)
            + (number_field(tree, "output_tokens") or 0.0),
            number_field(tree, "cost_usd") or 0.0))
    return points, refusals


def thinned(points: list[BudgetPoint]) -> list[BudgetPoint]:
    """At most ``MAX_POINTS``: the last point of each equal stretch, the last one always."""
    if len(points) <= MAX_POINTS:
        return points
    step = len(points) / MAX_POINTS
    return [points[min(len(points) - 1, int((i + 1) * step) - 1)] for i in range(MAX_POINTS)]


def budget_chart(points: list[BudgetPoint], refusals: list[float]) -> str:
    """The SVG for one tree; an empty string when no call moved the budget."""
    if not points:
        return ""
    shown = thinned(points)
    span = max([p.t for p in shown] + refusals) or 1.0
    inner_w, inner_h = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM

    def x(t: float) -> float:
        return _LEFT + inner_w * t / span

    parts = [f'<svg class="budget-chart" role="img" width="{_WIDTH}" height="{_HEIGHT}" '
             f'viewBox="0 0 {_WIDTH} {_HEIGHT}" xmlns="http://www.w3.org/2000/svg">',
             f'<title>budget use over {span:.1f} s: {len(points)} host call(s)</title>',
             f'<rect x="{_LEFT}" y="{_TOP}" width="{inner_w}" height="{inner_h}" '
             'fill="#fafafa" stroke="#d0d7de"/>']
    for t in refusals:
        parts.append(f'<line class="refusal" x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{_TOP}" '
                     f'y2="{_TOP + inner_h}" stroke="#cf222e" stroke-width="2">'
                     f'<title>budget refused at {t:.2f} s</title></line>')
    legend_x = _LEFT
    for name, (label, colour) in SERIES.items():
        values = [getattr(p, name) for p in shown]
        top = max(values) or 1.0
        coords = " ".join(f"{x(p.t):.1f},{_TOP + inner_h * (1 - v / top):.1f}"
                          for p, v in zip(shown, values, strict=True))
        final = getattr(points[-1], name)
        shown_final = f"{final:.4f}" if name == "cost" else f"{final:.0f}"
        parts.append(f'<polyline data-series="{name}" fill="none" stroke="{colour}" '
                     f'stroke-width="2" points="{coords}"><title>{esc(label)}: '
                     f'{shown_final} at the end</title></polyline>')
        parts.append(f'<text x="{legend_x}" y="{_HEIGHT - 12}" fill="{colour}" '
                     f'font-size="12">{esc(label)}: {shown_final}</text>')
        legend_x += 200
    parts.append(f'<text x="{_WIDTH - _RIGHT}" y="{_HEIGHT - 26}" text-anchor="end" '
                 f'font-size="11" fill="#57606a">{span:.1f} s</text></svg>')
    return "".join(parts)
