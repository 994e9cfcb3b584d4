"""E2B backend timings against the local test double (and against E2B when a key is set).

What rlmbox's e2b transport costs, per cell and per host call, next to the same figures on
the process backend, with the double's own latency shown apart (an envd unary RPC, and a
raw stdin->stdout echo through a process started with envd) so the double is not mistaken
for rlmbox. The double's "VMs" are local jails: these are transport figures, not E2B's.
With ``E2B_API_KEY`` in the environment the same table is printed for real E2B too.
Usage: python benchmarks/bench_e2b.py [--cells N] [--sessions N]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))

from e2b_double.env import LIVE_E2B_ENV, shared_double, use_live_e2b
from figures import Figure, Table, timed

from rlmbox.lm.scripted import ScriptedLM
from rlmbox.runtime.runtime import Runtime

START, CELL, CALL = "session start (cold)", "empty cell", "cell with one host call"
RPC, ECHO = "double: envd unary RPC", "double: stdin->stdout echo"


def _policy(directory: Path, backend: str, template: str) -> Path:
    isolation: dict[str, Any] = {"backend": backend}
    if backend == "e2b":
        isolation["e2b"] = {"template": template, "timeout_s": 600, "cpu": 1, "memory_mb": 256}
    path = directory / f"{backend}.yaml"
    path.write_text(json.dumps({
        "version": 1, "name": f"bench-{backend}", "isolation": isolation,
        "budgets": {"tree": {"calls": 1_000_000}},
        "rules": [{"id": "permit-llm", "effect": "permit", "function": "llm_query"}]}))
    return path


def measure(backend: str, sessions: int, cells: int, template: str) -> dict[str, list[float]]:
    """Session start, an empty cell, and a cell making one host call."""
    found: dict[str, list[float]] = {START: [], CELL: [], CALL: []}
    with tempfile.TemporaryDirectory() as tmp:
        rt = Runtime(_policy(Path(tmp), backend, template), lm=ScriptedLM(default="x"),
                     audit_dir=Path(tmp) / "audit", pool_size=0, durability="session")
        try:
            rt.backend(backend).properties()   # the probe is not a session's start
            for _ in range(sessions):
                started = time.perf_counter()
                with rt.session() as session:
                    found[START].append(time.perf_counter() - started)
                    found[CELL] += timed(functools.partial(session.exec, "pass"), cells)
                    found[CALL] += timed(functools.partial(session.exec, "llm_query('p')"),
                                         cells)
        finally:
            rt.close()
    return found


def double_latency(rounds: int) -> dict[str, list[float]]:
    """The double's own cost: an envd unary RPC, and one stdin->stdout echo."""
    from e2b_code_interpreter import Sandbox

    double = shared_double()
    sandbox = Sandbox.create(template="rlmbox", api_key=double.api_key, api_url=double.url,
                             sandbox_url=double.url, timeout=120)
    found: dict[str, list[float]] = {RPC: timed(sandbox.commands.list, rounds), ECHO: []}
    try:
        handle = sandbox.commands.run("cat", background=True, stdin=True, timeout=0)
        events = iter(handle)

        def echo() -> None:
            handle.send_stdin("x\n")
            next(events)

        found[ECHO] = timed(echo, rounds)
        handle.kill()
    finally:
        sandbox.kill()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--cells", type=int, default=50)
    parser.add_argument("--sessions", type=int, default=3)
    args = parser.parse_args()
    table = Table("transport only: the e2b backend against the local E2B test double "
                  "(its VMs are local jails), beside the process backend")
    for name, samples in double_latency(args.cells).items():
        table.floors[name] = Figure(table.title, "floor", name, tuple(samples),
                                    note="the double itself, through the SDK")
    for measure_name, samples in measure("process", args.sessions, args.cells,
                                         "rlmbox").items():
        table.add("process", measure_name, samples)
    for measure_name, samples in measure("e2b", args.sessions, args.cells, "rlmbox").items():
        table.add("e2b (test double)", measure_name, samples,
                  floor=(ECHO,) if measure_name != START else ())
    if "E2B_API_KEY" in LIVE_E2B_ENV:
        use_live_e2b()
        template = os.environ.get("RLMBOX_E2B_TEMPLATE", "code-interpreter-v1")
        for measure_name, samples in measure("e2b", args.sessions, args.cells,
                                             template).items():
            table.add(f"e2b (live, template {template})", measure_name, samples)
    else:
        table.fail("e2b (live)", "all", "no E2B_API_KEY in the environment: not measured")
    table.print(f"{args.sessions} sessions, {args.cells} cells each; the floor of a cell is "
                "one stdin->stdout echo through the double's envd")


if __name__ == "__main__":
    main()
