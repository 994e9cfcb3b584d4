"""Aggregates host calls by session and function: calls, denials, tokens, cost.

Reads these attributes of ``host.call`` events (the runtime emits them): ``function``,
``decision`` (``"deny"`` counts as a denial), ``tokens_in``, ``tokens_out``, ``cost_usd``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass
class CallStats:
    """Totals for one (session, function) pair."""

    calls: int = 0
    denials: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0

    def add(self, record: dict[str, Any]) -> None:
        self.calls += 1
        if record.get("decision") == "deny":
            self.denials += 1
        self.tokens_in += _int(record.get("tokens_in"))
        self.tokens_out += _int(record.get("tokens_out"))
        self.cost_usd += _float(record.get("cost_usd"))


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _float(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return 0.0


def aggregate(records: Iterable[dict[str, Any]]) -> dict[tuple[str, str], CallStats]:
    """``{(session, function): CallStats}`` over the ``host.call`` events in ``records``."""
    table: dict[tuple[str, str], CallStats] = {}
    for record in records:
        if record.get("event") != "host.call":
            continue
        key = (str(record.get("session") or "-"), str(record.get("function") or "?"))
        table.setdefault(key, CallStats()).add(record)
    return table
