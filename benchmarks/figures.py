"""One measured figure, the table that prints figures beside their floors, and the record.

Every benchmark script reports through :class:`Table`: a row is a list of samples (seconds,
or a count with its unit) plus the floors it is compared with, named; the table prints
median, p99 (nearest rank; with few samples it is the maximum), n, the floor's value and
the ratio of the median to it. When ``RLMBOX_BENCH_RESULTS`` names a file (``run_all.sh``
sets it), every row is also appended to it as one JSON line, so the target table and the
README tables are computed from the same run instead of being copied by hand.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

RESULTS_ENV = "RLMBOX_BENCH_RESULTS"
SECONDS = "s"


@dataclass(frozen=True)
class Figure:
    """One row: what was measured on which system, its samples and its floor's names."""

    table: str
    system: str
    measure: str
    samples: tuple[float, ...]
    unit: str = SECONDS
    floor: tuple[str, ...] = ()   # names of floors whose medians add up to this row's floor
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p99(self) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]

    @property
    def n(self) -> int:
        return len(self.samples)

    def as_record(self) -> dict[str, object]:
        ok = bool(self.samples)
        return {"table": self.table, "system": self.system, "measure": self.measure,
                "unit": self.unit, "median": self.median if ok else None,
                "p99": self.p99 if ok else None, "n": self.n, "floor": list(self.floor),
                "note": self.note}


def fmt(value: float, unit: str = SECONDS) -> str:
    """Seconds in the unit that keeps three or four digits; other units as counts."""
    if unit != SECONDS:
        return f"{value:,.1f} {unit}" if value < 100 else f"{value:,.0f} {unit}"
    if value < 1e-3:
        return f"{value * 1e6:.1f} µs"
    if value < 1.0:
        return f"{value * 1e3:.2f} ms"
    return f"{value:.2f} s"


def timed(fn: Callable[[], object], n: int) -> list[float]:
    """Wall time of ``n`` calls of ``fn``, in seconds, one sample per call."""
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return samples


def floor_value(names: Sequence[str], floors: Mapping[str, Figure]) -> float | None:
    """The sum of the named floors' medians, or None when one of them was not measured."""
    if not names or any(name not in floors or not floors[name].samples for name in names):
        return None
    return sum(floors[name].median for name in names)


@dataclass
class Table:
    """Rows of one table and the floors measured for it in the same run."""

    title: str
    floors: dict[str, Figure] = field(default_factory=dict)
    rows: list[Figure] = field(default_factory=list)

    def add(self, system: str, measure: str, samples: Sequence[float], *,
            floor: Sequence[str] = (), unit: str = SECONDS, note: str = "") -> None:
        if not samples:
            self.fail(system, measure, note or "no samples")
            return
        self.rows.append(Figure(self.title, system, measure, tuple(samples), unit,
                                tuple(floor), note))

    def fail(self, system: str, measure: str, why: str) -> None:
        """A measurement that could not be taken is a row saying why, not a missing row."""
        self.rows.append(Figure(self.title, system, measure, (), note=why.replace("|", "/")[:160]))
        print(f"[{self.title}] {system}: {measure}: {why}", file=sys.stderr)

    def render(self) -> str:
        head = ("system", "measure", "median", "p99", "n", "floor", "ratio to floor", "note")
        lines = [self._line(head), "|" + "|".join("---" for _ in head) + "|"]
        for row in self.rows:
            floor = floor_value(row.floor, self.floors)
            cells = (row.system, row.measure,
                     fmt(row.median, row.unit) if row.samples else "—",
                     fmt(row.p99, row.unit) if row.samples else "—", str(row.n),
                     f"{' + '.join(row.floor)} = {fmt(floor)}" if floor is not None else "",
                     f"{row.median / floor:.1f}x" if floor and row.samples else "",
                     row.note)
            lines.append(self._line(cells))
        return "\n".join(lines)

    def render_floors(self) -> str:
        lines = [self._line(("floor", "how", "median", "p99", "n")),
                 "|---|---|---|---|---|"]
        for name, figure in self.floors.items():
            lines.append(self._line((
                name, figure.note, fmt(figure.median) if figure.samples else "—",
                fmt(figure.p99) if figure.samples else "—",
                str(figure.n) if figure.samples else f"0 ({figure.note})")))
        return "\n".join(lines)

    def print(self, preamble: str = "") -> None:
        """Prints the floors, then the table (markdown), and records both."""
        print(f"### {self.title}\n")
        if preamble:
            print(preamble + "\n")
        if self.floors:
            print("Floors, measured in this run:\n")
            print(self.render_floors() + "\n")
        print(self.render())
        record([*self.floors.values(), *self.rows])

    @staticmethod
    def _line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cells) + " |"


def record(figures: Sequence[Figure]) -> None:
    """Appends the figures to the results file named by ``RLMBOX_BENCH_RESULTS``, if any."""
    target = os.environ.get(RESULTS_ENV)
    if not target:
        return
    with Path(target).open("a", encoding="utf-8") as handle:
        for figure in figures:
            handle.write(json.dumps(figure.as_record(), ensure_ascii=False) + "\n")


def load_records(path: Path) -> list[dict[str, object]]:
    """The rows a run recorded, in order."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]
