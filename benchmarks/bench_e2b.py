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
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))

from e2b_double.env import LIVE_E2B_ENV, shared_double, use_live_e2b

from rlmbox.lm.scripted import ScriptedLM
from rlmbox.runtime.runtime import Runtime


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:8.2f} ms"


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
    """Session start, an empty cell, and a cell making one host call (median each)."""
    found: dict[str, list[float]] = {"start": [], "cell": [], "call": []}
    with tempfile.TemporaryDirectory() as tmp:
        rt = Runtime(_policy(Path(tmp), backend, template), lm=ScriptedLM(default="x"),
                     audit_dir=Path(tmp) / "audit", pool_size=0, durability="session")
        try:
            rt.backend(backend).properties()   # the probe is not a session's start
            for _ in range(sessions):
                started = time.perf_counter()
                with rt.session() as session:
                    found["start"].append(time.perf_counter() - started)
                    for _ in range(cells):
                        started = time.perf_counter()
                        session.exec("pass")
                        found["cell"].append(time.perf_counter() - started)
                        started = time.perf_counter()
                        session.exec("llm_query('p')")
                        found["call"].append(time.perf_counter() - started)
        finally:
            rt.close()
    return found


def double_latency(rounds: int) -> dict[str, list[float]]:
    """The double's own cost: an envd unary RPC, and one stdin->stdout echo."""
    from e2b_code_interpreter import Sandbox

    double = shared_double()
    sandbox = Sandbox.create(template="rlmbox", api_key=double.api_key, api_url=double.url,
                             sandbox_url=double.url, timeout=120)
    found: dict[str, list[float]] = {"rpc": [], "echo": []}
    try:
        for _ in range(rounds):
            started = time.perf_counter()
            sandbox.commands.list()
            found["rpc"].append(time.perf_counter() - started)
        handle = sandbox.commands.run("cat", background=True, stdin=True, timeout=0)
        events = iter(handle)
        for _ in range(rounds):
            started = time.perf_counter()
            handle.send_stdin("x\n")
            next(events)
            found["echo"].append(time.perf_counter() - started)
        handle.kill()
    finally:
        sandbox.kill()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=50)
    parser.add_argument("--sessions", type=int, default=3)
    args = parser.parse_args()
    live_key = "E2B_API_KEY" in LIVE_E2B_ENV
    shared_double()
    local = measure("process", args.sessions, args.cells, "rlmbox")
    e2b = measure("e2b", args.sessions, args.cells, "rlmbox")
    own = double_latency(args.cells)
    print("## e2b backend against the local test double (VMs are local jails)\n")
    print("| figure | process | e2b (double) | e2b overhead |")
    print("|---|---|---|---|")
    for key, label in (("start", "session start (cold)"), ("cell", "empty cell"),
                       ("call", "cell with one host call")):
        overhead = statistics.median(e2b[key]) - statistics.median(local[key])
        print(f"| {label} | {_ms(local[key])} | {_ms(e2b[key])} | {overhead * 1000:8.2f} ms |")
    per_call = (statistics.median(e2b["call"]) - statistics.median(e2b["cell"])) * 1000
    print(f"\nhost call alone on e2b (call cell - empty cell): {per_call:.2f} ms")
    print(f"the double's own latency: envd unary RPC {_ms(own['rpc'])}, "
          f"stdin->stdout echo through envd {_ms(own['echo'])}")
    if live_key and os.environ.get("RLMBOX_BENCH_E2B_LIVE", "1") == "1":
        use_live_e2b()
        template = os.environ.get("RLMBOX_E2B_TEMPLATE", "code-interpreter-v1")
        live = measure("e2b", args.sessions, args.cells, template)
        print(f"\n## live E2B (template {template})\n")
        for key in ("start", "cell", "call"):
            print(f"- {key}: {_ms(live[key])}")
    else:
        print("\n(no E2B_API_KEY: no live figures)")


if __name__ == "__main__":
    main()
