"""Core benchmark: the process backend against in-process peers, measured in one run.

Run: ``.venv/bin/python benchmarks/bench_core.py`` (``--quick`` for fewer repetitions).
Prints the machine and a table. ``llm_query`` is timed inside the sandbox around each
call; one extra row runs it with an audit sink that discards events, to attribute the cost
of the per-call audit record (it is not a product mode). Peers measured in the same run
when installed: the rlms library's LocalREPL (no isolation, in-process) and
RestrictedPython compile+exec.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_peers import LLM_LOOP, loop_result

from rlmbox.lm.scripted import ScriptedLM
from rlmbox.runtime.runtime import Runtime

Row = tuple[str, str, float, float]


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}, "
            f"Python {platform.python_version()}")


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(median, p99) in microseconds."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e6)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


def bench_policy(directory: Path) -> Path:
    """The default preset with a call budget large enough for the llm_query loop."""
    import yaml

    from rlmbox.policies.model import load_policy

    data = load_policy("default").model_dump(mode="json")
    data["name"] = "bench"
    data["budgets"]["tree"]["calls"] = 1_000_000
    path = directory / "bench-policy.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def bench_rlmbox(repeat: int, durability: str) -> list[Row]:
    rows: list[Row] = []
    label = f"rlmbox process ({durability} durability)"
    with tempfile.TemporaryDirectory() as audit, Runtime(
            bench_policy(Path(audit)), lm=ScriptedLM(default="ok"), audit_dir=audit,
            pool_size=2,
            durability=durability) as rt:  # type: ignore[arg-type]
        if durability == "cell":
            med, p99 = timed(lambda: rt.session().close(), max(5, repeat // 50))
            rows.append((label, "session start, cold (pool empty each time)", med, p99))
        rt.warm_up()

        samples = []
        for _ in range(max(5, repeat // 50)):
            pool = rt.pool()
            assert pool is not None
            pool.wait_full()
            start = time.perf_counter()
            session = rt.session()
            samples.append((time.perf_counter() - start) * 1e6)
            session.close()
        samples.sort()
        rows.append((label, "session start, warm pool", statistics.median(samples),
                     samples[-1]))
        with rt.session() as s:
            med, p99 = timed(lambda: s.exec("x = 1"), repeat)
            rows.append((label, "trivial cell round trip", med, p99))
            first: list[float] = []
            last: list[float] = []
            for i in range(1000):
                start = time.perf_counter()
                s.exec(f"v{i} = {i}")
                (first if i < 100 else last if i >= 900 else []).append(
                    (time.perf_counter() - start) * 1e6)
            rows.append((label, "cells 1-100 of 1,000 distinct (median; max)",
                         statistics.median(first), max(first)))
            rows.append((label, "cells 901-1,000 of 1,000 distinct (median; max)",
                         statistics.median(last), max(last)))
            rows.append((label, "llm_query round trip (instant scripted LM)",
                         *llm_query_inside(s, repeat)))
    return rows


def llm_query_inside(session: Any, n: int) -> tuple[float, float]:
    """(median, p99) µs of ``llm_query`` timed inside the sandbox around each call (the
    same loop bench_peers times)."""
    result = session.exec(LLM_LOOP.format(n=n))
    seconds, reply = loop_result(result.stdout)
    if result.status != "ok" or reply != "ok":
        raise SystemExit(f"llm_query loop failed: {result.error or reply}")
    samples = sorted(s * 1e6 for s in seconds)
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


class DiscardingAudit:
    """Attribution only, not a product mode: an audit sink that records nothing, to show
    what the per-call audit record (redaction, canonical JSON, hash chain) costs."""

    def append(self, event: str, **attributes: Any) -> dict[str, Any]:
        return {}

    def sync(self) -> None:
        pass

    def add_secret(self, value: str) -> None:
        pass

    def close(self) -> None:
        pass


def bench_attribution(repeat: int) -> list[Row]:
    with tempfile.TemporaryDirectory() as directory, Runtime(
            bench_policy(Path(directory)), lm=ScriptedLM(default="ok"),
            audit=DiscardingAudit(), pool_size=0) as rt, rt.session() as s:
        return [("rlmbox process, audit discarded (attribution)",
                 "llm_query round trip (instant scripted LM)", *llm_query_inside(s, repeat))]


def bench_rlms_local(repeat: int) -> list[Row]:
    try:
        from rlm.environments.local_repl import LocalREPL
    except ImportError:
        return []
    repl = LocalREPL()
    med, p99 = timed(lambda: repl.execute_code("x = 1"), repeat)
    repl.cleanup()
    return [("rlms LocalREPL (in-process, no isolation)", "trivial cell round trip", med, p99)]


def bench_restricted(repeat: int) -> list[Row]:
    try:
        from RestrictedPython import compile_restricted, safe_globals  # type: ignore[attr-defined]
    except ImportError:
        return []

    def run() -> None:
        code = compile_restricted("x = 1", "<cell>", "exec")
        exec(code, dict(safe_globals))  # noqa: S102 - the peer being measured

    med, p99 = timed(run, repeat)
    return [("RestrictedPython (in-process)", "trivial cell compile+exec", med, p99)]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeat = 200 if args.quick else 2000
    rows = [*bench_rlmbox(repeat, "cell"), *bench_rlmbox(repeat, "session"),
            *bench_attribution(repeat),
            *bench_rlms_local(repeat), *bench_restricted(repeat)]
    print(f"machine: {machine()}")
    print(f"repetitions: {repeat}\n")
    print(f"| {'system':<46} | {'measure':<48} | {'median µs':>10} | {'p99 µs':>10} |")
    print(f"|{'-' * 48}|{'-' * 50}|{'-' * 12}|{'-' * 12}|")
    for system, measure, med, p99 in rows:
        print(f"| {system:<46} | {measure:<48} | {med:>10.1f} | {p99:>10.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
