"""The audit log's hot paths, each measured so a loaded machine moves it little.

    PYTHONPATH=. python benchmarks/bench_audit_paths.py [--dir /path/for/the/log]

  * append() cost as CPU time of the appending thread (not wall time: on a shared machine
    the wall clock mostly measures the neighbours), median and min of 7 runs of 5,000;
  * append()+sync() wall time, p50/p99 of 1,500, in ``--dir`` (default: the temp dir; give a
    tmpfs such as /dev/shm to see the commit path without the disk's fsync);
  * fsyncs per distinct cell: a code body and three output bodies, all new, then sync(),
    counted by wrapping os.fsync (a count, so no noise at all).

Run it against two trees by PYTHONPATH, alternating, to compare them on the same machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from bench_audit import _host_call

from rlmbox.audit.log import AuditLog

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike


def append_cpu_us(base: Path) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        log = AuditLog(Path(tmp) / "audit", secrets=["sk-not-a-real-key-0000000000"])
        for i in range(2000):
            _host_call(log, 0, i)
        runs = []
        for _ in range(7):
            start = time.thread_time_ns()
            for i in range(5000):
                _host_call(log, 0, i)
            runs.append((time.thread_time_ns() - start) / 5000 / 1000)
            log.sync()
        log.close()
    return statistics.median(runs), min(runs)


def append_sync_us(base: Path) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        log = AuditLog(Path(tmp) / "audit")
        samples = []
        for i in range(1500):
            start = time.perf_counter()
            _host_call(log, 0, i)
            log.sync()
            samples.append((time.perf_counter() - start) * 1e6)
        log.close()
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99)]


@contextmanager
def counted_fsyncs() -> Iterator[list[int]]:
    calls: list[int] = []
    real = os.fsync

    def counting(fd: FileDescriptorLike) -> None:
        calls.append(fd if isinstance(fd, int) else fd.fileno())
        real(fd)

    os.fsync = counting
    try:
        yield calls
    finally:
        os.fsync = real


def fsyncs_per_distinct_cell(base: Path, cells: int = 50) -> float:
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        log = AuditLog(Path(tmp) / "audit", checkpoint_every=1_000_000)
        log.append("warm", bodies={"first": "opens the body store"})
        log.sync()
        with counted_fsyncs() as calls:
            for cell in range(cells):
                log.append("code.exec", cell=cell, bodies={"code": f"v{cell} = {cell}"})
                log.append("cell.result", cell=cell, bodies={
                    "stdout": f"out {cell}", "stderr": f"err {cell}", "answer": str(cell)})
                log.sync()
        log.close()
    return len(calls) / cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    cpu_median, cpu_min = append_cpu_us(args.dir)
    p50, p99 = append_sync_us(args.dir)
    print(f"append() thread CPU, median / min of 7 (us)   {cpu_median:8.2f} {cpu_min:8.2f}")
    print(f"append()+sync() in {args.dir}, p50 / p99 (us) {p50:8.0f} {p99:8.0f}")
    per_cell = fsyncs_per_distinct_cell(args.dir)
    print(f"fsyncs per distinct cell (4 new bodies)       {per_cell:8.1f}")


if __name__ == "__main__":
    main()
