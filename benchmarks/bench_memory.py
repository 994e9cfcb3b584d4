"""Idle sessions per GiB of host memory, per backend, full stack.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_memory.py [--sessions N] [--smoke]

Opens N sessions (no pool) under the stack policy, runs one trivial cell in each so the
agent is as a frontend leaves it, then measures while they sit idle:
  * sandbox side: the PSS (proportional set size, ``/proc/<pid>/smaps_rollup``: each
    shared page divided among the processes mapping it, so a sum counts it once) of every
    process of every sandbox: for ``process`` the descendants of this benchmark (bubblewrap,
    the namespace's init, the agent); for Docker the container's ``containerd-shim`` and all
    its descendants (runc: the agent; runsc: the sandbox, the gofer and the agent);
  * host side: the growth of this process's own PSS (the Session objects, threads,
    channels, the audit log) from before the first session to after the last;
per session = (host growth + sandbox sum) / N, and sessions per GiB = 1 GiB / that. RSS sums
are printed beside as an upper bound (shared pages counted in every process). Not counted:
the kernel's own memory for the namespaces, cgroups and page tables, and dockerd's and
containerd's growth; the drop of the system-wide ``MemAvailable`` per session is printed as
a cross-check that does count them, noisy on a shared machine.
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from figures import Table
from stack import available_backends, stack_policy, system_name

from rlmbox.lm.scripted import ScriptedLM
from rlmbox.runtime.runtime import Runtime
from rlmbox.runtime.session import Session

GIB_KIB = 1 << 20


def memory_kib(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of one process in KiB; (0, 0) if it is gone."""
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return 0, 0
    values = {ln.split(":")[0]: int(ln.split()[1]) for ln in lines if ln.endswith("kB")}
    return values.get("Pss", 0), values.get("Rss", 0)


def children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(parent, []).append(int(entry.name))
    return kids


def tree(root: int, kids: dict[int, list[int]]) -> set[int]:
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo.extend(kids.get(pid, []))
    return found


def mem_available_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    return 0


def sandbox_pids(backend: str, sessions: list[Session], before: set[int]) -> set[int]:
    kids = children_map()
    if backend == "process":
        return tree(os.getpid(), kids) - before - {os.getpid()}
    pids: set[int] = set()
    for session in sessions:
        name = session.sandbox.info.sandbox_id
        inspected = subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", name],
                                   capture_output=True, text=True, check=True, timeout=30)
        init = int(inspected.stdout.strip())
        shim = int(Path(f"/proc/{init}/stat").read_text().rsplit(")", 1)[1].split()[1])
        pids |= tree(shim, kids)
    return pids


def measure(table: Table, backend: str, runtime: str | None, count: int, audit: str) -> None:
    system = system_name(backend, runtime)
    with Runtime(stack_policy(backend, runtime), lm=ScriptedLM(default="ok"), audit_dir=audit,
                 pool_size=0) as rt:
        rt.session().close()   # the isolation probe, imports and caches: not per session
        gc.collect()
        before_pids = tree(os.getpid(), children_map())
        host_before = memory_kib(os.getpid())[0]
        available_before = mem_available_kib()
        with ExitStack() as stack:
            sessions = []
            for _ in range(count):
                session = stack.enter_context(rt.session())
                session.exec("x = 1")
                sessions.append(session)
            time.sleep(1.0)   # idle: let start-up work settle
            gc.collect()
            host_growth = max(0, memory_kib(os.getpid())[0] - host_before)   # noise can shrink it
            pids = sandbox_pids(backend, sessions, before_pids)
            pss = sum(memory_kib(pid)[0] for pid in pids)
            rss = sum(memory_kib(pid)[1] for pid in pids)
            available_drop = available_before - mem_available_kib()
    per_session = (host_growth + pss) / count
    note = (f"{count} idle sessions, {len(pids)} sandbox processes; per session: "
            f"sandbox PSS {pss / count / 1024:.1f} MiB, host PSS growth "
            f"{host_growth / count:.0f} KiB, sandbox RSS {rss / count / 1024:.1f} MiB, "
            f"MemAvailable drop {available_drop / count / 1024:.1f} MiB")
    table.add(system, "idle sessions per GiB (PSS, host + sandbox)",
              [GIB_KIB / per_session], unit="sessions", note=note)
    table.add(system, "memory per idle session (PSS, host + sandbox)",
              [per_session / 1024], unit="MiB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20, help="sessions per backend")
    parser.add_argument("--smoke", action="store_true", help="two sessions, to prove it runs")
    args = parser.parse_args()
    count = 2 if args.smoke else args.sessions
    backends, _image, no_docker = available_backends()
    table = Table("idle sessions per GiB of host memory")
    with tempfile.TemporaryDirectory(prefix="bench-memory-audit-") as audit:
        for backend, runtime in backends:
            try:
                measure(table, backend, runtime, count, audit)
            except Exception as exc:  # a backend failing is a result
                table.fail(system_name(backend, runtime), "idle sessions per GiB",
                           f"{type(exc).__name__}: {exc}")
    if no_docker:
        table.fail("rlmbox docker", "(engine)", no_docker)
    table.print(f"{count} sessions per backend, each after one trivial cell, measured idle "
                "(method: benchmarks/bench_memory.py's docstring)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
