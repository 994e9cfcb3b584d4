"""What the daemon adds over embedded use: session start and exec round trips.

    PYTHONPATH=. python benchmarks/bench_daemon.py [--sessions 10] [--cells 50]

Runs the same work three ways on this machine, process backend, no warm pool: embedded
(``Runtime`` in this process), through the daemon over its Unix socket, and over loopback
TCP. The daemon runs in this process on its own event-loop thread (what the tests do), so
the difference is HTTP + JSON + the thread hop, not a second interpreter. Prints p50/p90
in milliseconds per operation.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlmbox.daemon.client import Client
from rlmbox.daemon.lifecycle import Daemon, DaemonConfig, load_policies
from rlmbox.daemon.store import Store
from rlmbox.lm.scripted import ScriptedLM
from rlmbox.runtime.runtime import Runtime


def timed(fn: Callable[[], Any], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def row(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[int(len(ordered) * 0.9) - 1] if len(ordered) >= 10 else ordered[-1]
    return f"| {name:<52} | {statistics.median(ordered):8.2f} | {p90:8.2f} | {len(ordered):4} |"


def embedded(root: Path, sessions: int, cells: int) -> list[str]:
    lm = ScriptedLM(default="ok")
    with Runtime("default", lm=lm, audit_dir=root / "embedded", pool_size=0) as rt:
        starts = timed(lambda: rt.session().close(), sessions)
        with rt.session() as s:
            trivial = timed(lambda: s.exec("x = 1"), cells)
            llm = timed(lambda: s.exec("llm_query('hi')"), cells)
    return [row("embedded: session start + close", starts),
            row("embedded: exec trivial cell", trivial),
            row("embedded: exec cell with one llm_query", llm)]


def through(client: Client, label: str, sessions: int, cells: int) -> list[str]:
    def start_close() -> None:
        client.close_session(client.create_session()["id"])

    starts = timed(start_close, sessions)
    sid = client.create_session()["id"]
    trivial = timed(lambda: client.exec(sid, "x = 1"), cells)
    llm = timed(lambda: client.exec(sid, "llm_query('hi')"), cells)
    client.close_session(sid)
    return [row(f"{label}: session start + close", starts),
            row(f"{label}: exec trivial cell", trivial),
            row(f"{label}: exec cell with one llm_query", llm)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--cells", type=int, default=50)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="rbx-bench-"))
    lines = embedded(root, args.sessions, args.cells)
    config = DaemonConfig(state_dir=root / "state", socket=root / "d.sock",
                          tcp="127.0.0.1:0", policies=load_policies(["default"]),
                          lm=ScriptedLM(default="ok"))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    daemon = Daemon(config)
    asyncio.run_coroutine_threadsafe(daemon.start(), loop).result(120)
    try:
        store = Store(config.state_dir)
        token = store.create_token("bench")[1]
        store.close()
        with Client(socket=config.socket, token=token) as client:
            lines += through(client, "daemon, unix socket", args.sessions, args.cells)
        assert daemon.tcp_address is not None
        url = f"http://127.0.0.1:{daemon.tcp_address[1]}"
        with Client(url=url, token=token) as client:
            lines += through(client, "daemon, loopback TCP", args.sessions, args.cells)
    finally:
        asyncio.run_coroutine_threadsafe(daemon.stop(), loop).result(120)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        shutil.rmtree(root, ignore_errors=True)
    print(f"bench_daemon on {platform.node()} ({platform.machine()}, Python "
          f"{platform.python_version()})")
    print(f"| {'operation':<52} | {'p50 ms':>8} | {'p90 ms':>8} | {'n':>4} |")
    print(f"|{'-' * 54}|{'-' * 10}|{'-' * 10}|{'-' * 6}|")
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
