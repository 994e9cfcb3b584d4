"""Policy decision latency and ledger reserve+commit latency.

    PYTHONPATH=. python benchmarks/bench_policy.py [--n 20000]

A 100-rule policy (tools tool_0..tool_24, each with a permit on model/prompt conditions,
a forbid on a regex, a pattern permit and a blanket forbid on another name), decided for a
mix of requests: permitted, forbidden, default-denied. Prints p50/p99 per operation in
microseconds; target p50 < 20 us for a decision.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from functools import partial

from rlmbox.policies.engine import CallRequest, PolicyEngine
from rlmbox.policies.model import Policy, policy_from_data
from rlmbox.runtime.ledger import Ledger


def hundred_rule_policy() -> Policy:
    rules = []
    for i in range(25):
        fn = f"tool.t{i}"
        rules += [
            {"id": f"p{i}", "effect": "permit", "function": fn,
             "when": {"model": {"in": ["small", "medium"]}, "prompt": {"max_length": 10000}}},
            {"id": f"f{i}", "effect": "forbid", "function": fn,
             "when": {"prompt": {"regex": ".*secret.*"}}},
            {"id": f"n{i}", "effect": "permit", "function": f"tool.t{i}*",
             "when": {"n": {"min": 0, "max": 100}}},
            {"id": f"x{i}", "effect": "forbid", "function": f"tool.blocked{i}"},
        ]
    return policy_from_data({"name": "bench", "rules": rules})


def measure(fn: Callable[[], object], n: int) -> tuple[float, float]:
    for _ in range(min(1000, n)):
        fn()   # warm caches
    samples = []
    clock = time.perf_counter_ns
    for _ in range(n):
        start = clock()
        fn()
        samples.append(clock() - start)
    samples.sort()
    return samples[len(samples) // 2] / 1000, samples[int(len(samples) * 0.99)] / 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20000)
    n = parser.parse_args().n
    policy = hundred_rule_policy()
    engine = PolicyEngine(policy)
    prompt = "summarise this paragraph " * 40
    requests = {
        "decide: permit (2 conditions)": CallRequest(
            "tool.t7", {"model": "small", "prompt": prompt}),
        "decide: forbid (regex on 1 KB)": CallRequest(
            "tool.t7", {"model": "small", "prompt": prompt + " secret"}),
        "decide: default deny": CallRequest("tool.unknown", {"model": "small"}),
    }
    rows = [(name, *measure(partial(engine.decide, req), n)) for name, req in requests.items()]
    ledger = Ledger(policy_from_data({"budgets": {"tree": {
        "calls": 10**9, "max_concurrent": 10**6, "input_tokens": 10**15,
        "output_tokens": 10**15, "cost_usd": 10.0**9}}}).budgets)

    def reserve_commit() -> None:
        ledger.commit(ledger.reserve("llm_query", depth=0, prompt_chars=1000),
                      input_tokens=250, output_tokens=50, cost_usd=0.001)

    rows.append(("ledger: reserve + commit", *measure(reserve_commit, n)))
    rows.append(("ledger: snapshot", *measure(ledger.snapshot, n)))
    print(f"# rlmbox policy benchmark: {len(policy.rules)} rules, n={n}, "
          f"Python {platform.python_version()}, {platform.machine()}")
    print(f"| {'operation':<34} | {'p50 us':>8} | {'p99 us':>8} |")
    print(f"|{'-' * 36}|{'-' * 10}|{'-' * 10}|")
    for name, p50, p99 in rows:
        print(f"| {name:<34} | {p50:8.2f} | {p99:8.2f} |")
    worst = max(p50 for name, p50, _ in rows if name.startswith("decide"))
    print(f"\ndecision p50 target < 20 us: {'met' if worst < 20 else 'MISSED'} "
          f"(worst p50 {worst:.2f} us); median of all decisions "
          f"{statistics.median(r[1] for r in rows[:3]):.2f} us")


if __name__ == "__main__":
    main()
