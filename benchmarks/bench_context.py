"""Loading a large string into ``context``: 100 MB and 1 GB, full stack, per backend.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_context.py [--sizes-mb 100,1000] [--smoke]

Each sample is what a frontend waits for: ``Runtime.session(context=text)`` (the host
writes the text to a staging file, the sandbox stages it, the agent loads it) plus the
first cell, ``n = len(context)``, which proves the text arrived whole. Sessions come
from a warm pool that was full before each sample, so the figure is the load and not a
sandbox start; the same measurement without a context is printed beside it. The floor
is the two copies any design must make, in this process: the text into shared pages (a
memfd) and those pages into a fresh ``str``; both pay for first touching fresh memory, which
a bare memcpy into memory already touched does not. The floor makes them one after the
other; rlmbox makes only the first for a large ASCII text (the sandbox's string is the
staged file's own pages, mapped read-only), so its ratio to the floor can fall well below
1. The
policy's memory limit is raised to 4 GiB for this benchmark (1 GiB, the default, leaves a
1 GB string no room to work in).
The text is ASCII; ``MB`` is 10^6 characters. 1 GB loads on the process backend only (the
issue's target is there, and each sample takes seconds), unless ``--every-backend``; every
size takes ``--reps`` samples, as its floor does (the first at a size also pays for the
VM's first touch of fresh memory: its p99 shows that).
Memory: the host holds the text and the staged file's page cache (about 2 GB at 1 GB); the
sandbox's string is that page cache for a large ASCII text, else a copy decoded from it;
all freed after each size.
"""

from __future__ import annotations

import argparse
import gc
import mmap
import os
import sys
import tempfile
import time

from figures import Figure, Table, timed
from stack import available_backends, stack_policy, system_name

from rlmbox.lm.scripted import ScriptedLM
from rlmbox.runtime.runtime import Runtime
from rlmbox.runtime.staging import CHUNK_CHARS

NO_CONTEXT = "no context"
LARGE_MB = 1000   # sizes from here on load on the process backend only, unless asked


def copy_floor(text: str, n: int) -> list[float]:
    """The two copies no implementation can skip, in this process: the text into pages
    another process could map (a memfd, written a slice at a time) and those pages into a
    fresh ``str`` (decoded from a read-only mapping). No file system, no sandbox."""
    def copy() -> None:
        fd = os.memfd_create("floor-copy")
        try:
            with os.fdopen(os.dup(fd), "wb") as handle:
                for start in range(0, len(text), CHUNK_CHARS):
                    handle.write(text[start:start + CHUNK_CHARS].encode("utf-8"))
            with mmap.mmap(fd, 0, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ) as view:
                str(view, "utf-8")
        finally:
            os.close(fd)

    return timed(copy, n)


def load_samples(rt: Runtime, text: str | None, n: int) -> list[float]:
    pool = rt.pool()
    if pool is None:
        raise RuntimeError("the runtime made no pool")
    expected = len(text) if text is not None else 0
    samples = []
    for _ in range(n):
        pool.wait_full(120)
        started = time.perf_counter()
        with rt.session(context=text) as session:
            result = session.exec("n = len(context)" if text is not None else "n = 0")
            elapsed = time.perf_counter() - started
            check = session.exec("print(n)")
        if result.status != "ok" or check.stdout.strip() != str(expected):
            raise RuntimeError(f"the context did not arrive whole: {result.error or check.stdout}")
        samples.append(elapsed)
        gc.collect()
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", default="100,1000", help="comma-separated, 10^6 chars")
    parser.add_argument("--reps", type=int, default=3, help="samples per size, the floor's as many")
    parser.add_argument("--smoke", action="store_true", help="1 MB once, to prove it runs")
    parser.add_argument("--every-backend", action="store_true",
                        help="load 1 GB and more on Docker too (by default: process only)")
    args = parser.parse_args()
    sizes = [1] if args.smoke else [int(s) for s in args.sizes_mb.split(",")]
    reps = 1 if args.smoke else args.reps
    backends, _image, no_docker = available_backends()
    table = Table("context load into `context`")
    with tempfile.TemporaryDirectory(prefix="bench-context-audit-") as audit:
        for size in sizes:
            text = "x" * (size * 1_000_000)
            name = f"copy {size} MB"
            table.floors[name] = Figure(
                table.title, "floor", name, tuple(copy_floor(text, reps)),
                note="str -> memfd (sliced writes) -> str (decoded from a read-only map)")
            del text
            gc.collect()
        for backend, runtime in backends:
            system = system_name(backend, runtime)
            try:
                with Runtime(stack_policy(backend, runtime, memory_mb=4096),
                             lm=ScriptedLM(default="ok"), audit_dir=audit, pool_size=1) as rt:
                    rt.warm_up()
                    table.add(system, f"session start + first cell, {NO_CONTEXT}",
                              load_samples(rt, None, reps))
                    for size in sizes:
                        if size >= LARGE_MB and backend != "process" and not args.every_backend:
                            continue
                        text = "x" * (size * 1_000_000)
                        table.add(system, f"session start + first cell, {size} MB context",
                                  load_samples(rt, text, reps), floor=(f"copy {size} MB",))
                        del text
                        gc.collect()
            except Exception as exc:  # a backend failing is a result
                table.fail(system, "context load", f"{type(exc).__name__}: {exc}")
    if no_docker:
        table.fail("rlmbox docker", "(engine)", no_docker)
    table.print("sessions from a warm pool full before each sample")
    return 0


if __name__ == "__main__":
    sys.exit(main())
