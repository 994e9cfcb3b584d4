"""Audit log throughput with durable batching, and the latency of append+sync.

    PYTHONPATH=. python benchmarks/bench_audit.py [--events 50000] [--dir /path/on/target/fs]

Prints the machine (CPU, kernel, filesystem of the log directory) and a table:
  * events/s appending host.call-sized events from 1 and 4 threads, each thread calling
    sync() every 100 events, and the total counted only once the final sync() returned
    (so every counted event is written and fsynced);
  * per-call latency of append()+sync() (what a host call pays when the session waits for
    durability before acknowledging), p50/p99 over 2,000 calls.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from rlmbox.audit.log import AuditLog


def _machine(directory: Path) -> list[str]:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    fs = subprocess.run(["df", "-T", str(directory)], capture_output=True, text=True,
                        check=False).stdout.splitlines()[-1].split()
    cores = len([row for row in Path("/proc/cpuinfo").read_text().splitlines()
                 if row.startswith("processor")])
    return [f"cpu: {cpu} ({cores} cores)", f"kernel: {platform.release()}",
            f"filesystem: {fs[1]} on {fs[0]} ({directory})",
            f"python: {platform.python_version()}"]


def _host_call(log: AuditLog, worker: int, i: int) -> None:
    log.append("host.call", session=f"sess-{worker}", parent="root", depth=1, tenant="acme",
               call=f"c{i}", function="llm_query", decision="permit", rule_ids=["allow-llm"],
               args_sha256="ab" * 32, budget={"before": {"calls": 100 - i % 100},
                                              "after": {"calls": 99 - i % 100}},
               tokens_in=120, tokens_out=40, cost_usd=0.0012, latency_ms=431.5, outcome="ok")


def throughput(base: Path, threads: int, events: int) -> float:
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        log = AuditLog(Path(tmp) / "audit", secrets=["sk-not-a-real-key-0000000000"])
        per_thread = events // threads

        def work(worker: int) -> None:
            for i in range(per_thread):
                _host_call(log, worker, i)
                if i % 100 == 99:
                    log.sync()
            log.sync()

        workers = [threading.Thread(target=work, args=(w,)) for w in range(threads)]
        start = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        elapsed = time.perf_counter() - start
        log.close()
        return per_thread * threads / elapsed


def latency(base: Path, calls: int = 2000) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        log = AuditLog(Path(tmp) / "audit")
        samples = []
        for i in range(calls):
            start = time.perf_counter()
            _host_call(log, 0, i)
            log.sync()
            samples.append((time.perf_counter() - start) * 1e6)
        append_only = []
        for i in range(calls):
            start = time.perf_counter()
            _host_call(log, 0, i)
            append_only.append((time.perf_counter() - start) * 1e6)
        log.close()
    samples.sort()
    return (statistics.median(samples), samples[int(len(samples) * 0.99)],
            statistics.median(append_only))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    for line in _machine(args.dir):
        print(line)
    print()
    print(f"{'measure':<44} {'value':>14}")
    print("-" * 59)
    for threads in (1, 4):
        rate = throughput(args.dir, threads, args.events)
        print(f"{f'durable events/s, {threads} thread(s)':<44} {rate:>14,.0f}")
    p50, p99, append_p50 = latency(args.dir)
    print(f"{'append() alone, p50 (us)':<44} {append_p50:>14,.1f}")
    print(f"{'append()+sync() per host call, p50 (us)':<44} {p50:>14,.1f}")
    print(f"{'append()+sync() per host call, p99 (us)':<44} {p99:>14,.1f}")


if __name__ == "__main__":
    main()
