"""Paired A/B of the audit append between two source trees, runs alternated (ABBA...).

    git archive BASE | tar -x -C /tmp/base
    PYTHONPATH=. python benchmarks/pair_append.py /tmp/base . [--rounds 8]

On a shared machine one figure alone means nothing: each round runs both trees, one
after the other in alternating order, as fresh processes. Prints per figure the median
and minimum over the rounds: ``append()`` alone (wall p50 and p99, CPU per append from
``time.thread_time_ns``, which others' load disturbs less), a ``host.call.start`` with a
4 KiB prompt body (p50), and durable events/s from one and from four threads, each
syncing every 100 events.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _measure(tree: str) -> dict[str, float]:
    """One side of a round, run in a fresh process whose ``rlmbox`` is ``tree``'s."""
    sys.path[:0] = [tree, str(Path(tree) / "benchmarks")]
    from bench_audit import _SECRET, _host_call, throughput

    import rlmbox
    from rlmbox.audit.log import AuditLog
    if not rlmbox.__file__ or not rlmbox.__file__.startswith(str(Path(tree).resolve())):
        raise SystemExit(f"rlmbox imported from {rlmbox.__file__}, not {tree}")
    out: dict[str, float] = {}
    prompt = "Summarise the following document.\n" + "lorem ipsum dolor sit amet " * 150
    with tempfile.TemporaryDirectory() as tmp:
        log = AuditLog(Path(tmp) / "audit", secrets=[_SECRET])
        for i in range(500):
            _host_call(log, 0, i)
        samples = []
        cpu_start = time.thread_time_ns()
        for i in range(5000):
            start = time.perf_counter_ns()
            _host_call(log, 0, i)
            samples.append(time.perf_counter_ns() - start)
        out["append cpu us"] = (time.thread_time_ns() - cpu_start) / 5000 / 1000
        samples.sort()
        out["append p50 us"] = samples[2500] / 1000
        out["append p99 us"] = samples[4950] / 1000
        bodied = []
        for i in range(2000):
            start = time.perf_counter_ns()
            log.append("host.call.start", session="s", parent="root", depth=1, tenant="acme",
                       function="llm_query", call_id=f"c{i}", cell=3, decision="permit",
                       rule_ids=["allow-llm"], args={"prompt": "str", "model": "str"},
                       budget_before={"calls": 10, "in_flight": 0},
                       bodies={"args": json.dumps({"prompt": f"{prompt}{i}", "model": "m"})})
            bodied.append(time.perf_counter_ns() - start)
        bodied.sort()
        out["start+body p50 us"] = bodied[1000] / 1000
        log.close()
    for threads in (1, 4):
        out[f"events/s {threads} thr"] = throughput(Path(tempfile.gettempdir()), threads, 20_000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(_measure(args.measure)))
        return
    runs: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
    for round_no in range(args.rounds):
        order = [("A", args.a), ("B", args.b)]
        for side, tree in order if round_no % 2 == 0 else order[::-1]:
            done = subprocess.run(
                [sys.executable, __file__, args.a, args.b, "--measure", tree],
                capture_output=True, text=True, check=True,
                env={**os.environ, "PYTHONPATH": tree}, cwd=tree)
            runs[side].append(json.loads(done.stdout))
    for name in runs["A"][0]:
        a = [run[name] for run in runs["A"]]
        b = [run[name] for run in runs["B"]]
        print(f"{name:20s} A median {statistics.median(a):10.2f} min {min(a):10.2f}   "
              f"B median {statistics.median(b):10.2f} min {min(b):10.2f}")


if __name__ == "__main__":
    main()
