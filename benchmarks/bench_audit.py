"""Audit log throughput with durable batching, and the latency of append+sync.

    PYTHONPATH=. python benchmarks/bench_audit.py [--events 50000] [--dir /path/on/target/fs]

Prints the machine (CPU, kernel, filesystem of the log directory) and a table:
  * events/s appending host.call-sized events from 1 and 4 threads, each thread calling
    sync() every 100 events, and the total counted only once the final sync() returned
    (so every counted event is written and fsynced);
  * per-call latency of append()+sync() (what a host call pays when the session waits for
    durability before acknowledging), median/p99 over 2,000 calls, beside the fsync floor
    measured in the same directory.

``--stages`` prints instead where one append()'s time goes: each step of the processor
chain timed alone on the same event (medians of per-call perf_counter_ns samples), beside
the whole append().
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from figures import Figure, Table
from floors import FSYNC, fsync_line

from rlmbox.audit.canonical import GENESIS, normalize_fresh, record_digest, rfc3339_now
from rlmbox.audit.fast_canonical import fast_canonical_bytes
from rlmbox.audit.log import AuditLog
from rlmbox.audit.redact import Redactor

_SECRET = "sk-not-a-real-key-0000000000"  # noqa: S105  (fake: a registered secret to scan for)


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
        log = AuditLog(Path(tmp) / "audit", secrets=[_SECRET])
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


def latency(base: Path, calls: int = 2000) -> tuple[list[float], list[float]]:
    """Seconds per append()+sync() and per append() alone, one sample per event."""
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        log = AuditLog(Path(tmp) / "audit")
        def append_and_sync(i: int) -> None:
            _host_call(log, 0, i)
            log.sync()

        synced = timed_calls(append_and_sync, calls)
        append_only = timed_calls(lambda i: _host_call(log, 0, i), calls)
        log.close()
    return synced, append_only


def timed_calls(fn: Callable[[int], object], calls: int) -> list[float]:
    samples = []
    for i in range(calls):
        start = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - start)
    return samples


def _event(i: int) -> dict[str, object]:
    """The event ``_host_call`` appends, as the chain's first step receives it."""
    return {"session": "sess-0", "parent": "root", "depth": 1, "tenant": "acme",
            "call": f"c{i}", "function": "llm_query", "decision": "permit",
            "rule_ids": ["allow-llm"], "args_sha256": "ab" * 32,
            "budget": {"before": {"calls": 100 - i % 100}, "after": {"calls": 99 - i % 100}},
            "tokens_in": 120, "tokens_out": 40, "cost_usd": 0.0012, "latency_ms": 431.5,
            "outcome": "ok", "event": "host.call", "severity": "INFO"}


def stages(base: Path, calls: int) -> None:
    """Median ns per step of one append(), each step timed alone on the bench's event.

    The steps of a record without bodies whose line holds nothing to redact (``append``'s
    path for it): the copy of nested values, the timestamp, orjson's canonical bytes, the
    redaction pre-check of that line, SHA-256. A record with bodies, or whose line the
    pre-check flags, goes through the whole processor chain instead.
    """
    redactor = Redactor([_SECRET])
    event = _event(0)   # copied anew for each sample: the copy step checks it in place
    chained = {**event, "seq": 1, "ts": rfc3339_now(), "prev": GENESIS}
    line = fast_canonical_bytes(chained)
    steps: dict[str, Callable[[int], object]] = {
        "build the event": _event,
        "copy nested values (normalize_fresh)": lambda i: normalize_fresh(dict(event)),
        "timestamp": lambda i: rfc3339_now(),
        "canonical bytes (orjson)": lambda i: fast_canonical_bytes(chained),
        "redaction pre-check of the line": lambda i: redactor.may_change(line),
        "sha256 of the line": lambda i: record_digest(line),
    }
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        log = AuditLog(Path(tmp) / "audit", secrets=[_SECRET])
        steps["whole append()"] = lambda i: _host_call(log, 0, i)
        for name, step in steps.items():
            samples = sorted(timed_calls(step, calls))
            print(f"{name:40s} {samples[len(samples) // 2] * 1e6:7.2f} us")
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--calls", type=int, default=2000, help="latency samples")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--stages", action="store_true",
                        help="print where one append()'s time goes, and nothing else")
    args = parser.parse_args()
    if args.stages:
        stages(args.dir, args.calls)
        return
    table = Table("audit log, one AuditLog, host.call-sized events")
    table.floors[FSYNC] = Figure(table.title, "floor", FSYNC,
                                 tuple(fsync_line(max(20, args.calls // 10), args.dir)),
                                 note=f"200-byte append + fsync in {args.dir}")
    for threads in (1, 4):
        table.add("rlmbox AuditLog", f"durable events/s, {threads} thread(s)",
                  [throughput(args.dir, threads, args.events)], unit="events/s")
    synced, append_only = latency(args.dir, args.calls)
    table.add("rlmbox AuditLog", "append() alone", append_only)
    table.add("rlmbox AuditLog", "append()+sync() per host call", synced, floor=(FSYNC,))
    table.print("\n".join(_machine(args.dir)))


if __name__ == "__main__":
    main()
