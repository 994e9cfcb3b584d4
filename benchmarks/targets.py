"""Issue 16's targets, each as a ratio to its floor, from one run's recorded figures.

    python benchmarks/targets.py results/latest.json

Reads the rows the benchmarks recorded (``figures.record``) and prints one table: each
target with the figure it reads, that figure's median and p99, its floor (measured in the
same run, in the same table as the figure), the ratio of the median to the floor, the
target as the issue states it and the value that makes here, and met / not met. A figure
the run did not produce is "not measured", never a guess.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from figures import SECONDS, fmt, load_records
from floors import BWRAP_PYTHON, DECISION, EXEC, FSYNC, PIPE

Floors = dict[str, float]
MS, US = 1e-3, 1e-6


@dataclass(frozen=True)
class Target:
    """One line of the issue's target table, and how to read it from a run."""

    name: str
    system: str
    measure: str                        # the row's measure, or its beginning
    says: str                           # the target as the issue states it
    bound: Callable[[Floors], float]    # the target's value here, from the floors' medians
    floor: tuple[str, ...] = ()
    at_least: bool = False              # a capacity: the figure must reach the bound


def cell_durable(f: Floors) -> float:
    return f[FSYNC] + 5 * (f[PIPE] + f[EXEC])


def durable_call(f: Floors, pipes: int) -> float:
    """The issue's bound for an ``llm_query``, plus the fsync of its ``host.call.start``:
    Hardening made that record durable before the call runs (a crash cannot hide a call
    the model made), after the issue set its figure, which had no fsync in it."""
    return pipes * f[PIPE] + f[DECISION] + f[FSYNC]


PROCESS, RUNC, RUNSC = "rlmbox process", "rlmbox docker/runc", "rlmbox docker/runsc"
TARGETS = (
    Target("trivial cell, session durability", f"{PROCESS} (session durability)",
           "trivial cell", "≤ 5x (pipe + x = 1 exec)",
           lambda f: 5 * (f[PIPE] + f[EXEC]), (PIPE, EXEC)),
    Target("trivial cell, cell durability (default)", f"{PROCESS} (cell durability)",
           "trivial cell", "≤ fsync + 5x (pipe + x = 1 exec)", cell_durable,
           (FSYNC, PIPE, EXEC)),
    Target("distinct cell, cell durability", f"{PROCESS} (cell durability)", "distinct cell",
           "as a trivial cell: ≤ fsync + 5x (pipe + x = 1 exec)", cell_durable,
           (FSYNC, PIPE, EXEC)),
    Target("llm_query, instant LM, process", f"{PROCESS} (cell durability)", "llm_query",
           "≤ 6x pipe + one decision, + one fsync: the durable host.call.start",
           lambda f: durable_call(f, 6), (PIPE, DECISION, FSYNC)),
    Target("llm_query, instant LM, runc", f"{RUNC} (cell durability)", "llm_query",
           "≤ 8x pipe + one decision (the issue: about 80 µs where 6x is 60), + one fsync",
           lambda f: durable_call(f, 8), (PIPE, DECISION, FSYNC)),
    Target("llm_query, instant LM, runsc", f"{RUNSC} (cell durability)", "llm_query",
           "≤ 400 µs, + one fsync", lambda f: 400 * US + f[FSYNC], (PIPE, DECISION, FSYNC)),
    Target("audit append p50", "rlmbox AuditLog", "append() alone", "≤ 5 µs",
           lambda f: 5 * US),
    Target("durable audit events/s, one thread", "rlmbox AuditLog",
           "durable events/s, 1 thread", "≥ 100k", lambda f: 100_000, at_least=True),
    Target("session start, warm pool", PROCESS, "session start, warm pool", "≤ 1 ms",
           lambda f: 1 * MS, (FSYNC, PIPE)),
    Target("session start, cold", PROCESS, "session start, cold",
           "≤ 1.5x bare bwrap python -c pass", lambda f: 1.5 * f[BWRAP_PYTHON],
           (BWRAP_PYTHON,)),
    Target("session close, process", PROCESS, "session close", "≤ 5 ms", lambda f: 5 * MS),
    Target("session close, runc", RUNC, "session close", "≤ 20 ms", lambda f: 20 * MS),
    Target("session close, runsc", RUNSC, "session close", "≤ 50 ms", lambda f: 50 * MS),
    Target("daemon trivial cell, Unix socket",
           "rlmbox process (cell durability), daemon, unix socket", "exec trivial cell",
           "≤ embedded + 250 µs", lambda f: f["embedded trivial cell"] + 250 * US,
           ("embedded trivial cell",)),
    Target("rlms RlmboxREPL setup per completion",
           "RlmboxREPL process (locals summary on)", "setup per completion (pool_size=1)",
           "≤ 5 ms (warm pool)", lambda f: 5 * MS),
    Target("idle sessions per GiB, process", PROCESS, "idle sessions per GiB", "≥ 80",
           lambda f: 80, at_least=True),
    Target("idle sessions per GiB, runc", RUNC, "idle sessions per GiB", "≥ 30",
           lambda f: 30, at_least=True),
    Target("idle sessions per GiB, runsc", RUNSC, "idle sessions per GiB", "≥ 30",
           lambda f: 30, at_least=True),
    Target("context load, 100 MB string", PROCESS, "session start + first cell, 100 MB",
           "≤ 100 ms", lambda f: 100 * MS, ("copy 100 MB",)),
    Target("context load, 1 GB string", PROCESS, "session start + first cell, 1000 MB",
           "≤ 1 s", lambda f: 1.0, ("copy 1000 MB",)),
)


def find(records: list[dict[str, object]], target: Target) -> dict[str, object] | None:
    """The last recorded row for the target (a rerun of one script replaces its rows)."""
    found = None
    for row in records:
        if row["system"] == target.system and str(row["measure"]).startswith(target.measure):
            found = row
    return found


def floors_of(records: list[dict[str, object]], table: object) -> Floors:
    return {str(r["measure"]): float(str(r["median"])) for r in records
            if r["table"] == table and r["system"] == "floor" and r["median"] is not None}


def line(target: Target, records: list[dict[str, object]]) -> tuple[str, ...]:
    row = find(records, target)
    if row is None or row["median"] is None:
        why = "not measured" if row is None else f"failed: {row['note']}"
        return (target.name, target.system, why, "", "", "", target.says, "", "not measured")
    unit = str(row["unit"])
    median, p99 = float(str(row["median"])), float(str(row["p99"]))
    floors = floors_of(records, row["table"])
    floor = sum(floors[n] for n in target.floor) if all(
        n in floors for n in target.floor) and target.floor else None
    try:
        bound: float | None = target.bound(floors)
    except KeyError:   # a floor the bound needs was not measured
        bound = None
    met = "" if bound is None else (
        "met" if (median >= bound if target.at_least else median <= bound) else "not met")
    return (target.name, f"{row['system']}: {row['measure']}", fmt(median, unit),
            fmt(p99, unit),
            f"{' + '.join(target.floor)} = {fmt(floor)}" if floor is not None else "—",
            f"{median / floor:.1f}x" if floor and unit == SECONDS else "—",
            target.says, fmt(bound, unit) if bound is not None else "(floor missing)",
            met or "not measured")


def render(records: list[dict[str, object]]) -> str:
    head = ("target", "figure", "median", "p99", "floor (same run)", "ratio to floor",
            "issue 16 says", "that is, here", "status")
    rows = [head, tuple("---" for _ in head), *(line(t, records) for t in TARGETS)]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="the JSON lines a run recorded")
    args = parser.parse_args()
    print("### targets (issue 16), each against its floor from this run\n")
    print(render(load_records(args.results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
