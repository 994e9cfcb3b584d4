"""What the daemon adds over embedded use: session start and exec round trips.

    PYTHONPATH=. python benchmarks/bench_daemon.py [--sessions 10] [--cells 50]

Runs the same work three ways on this machine, process backend, no warm pool: embedded
(``Runtime`` in this process), through the daemon over its Unix socket, and over loopback
TCP. The daemon runs in this process on its own event-loop thread (what the tests do), so
the difference is HTTP + JSON + the thread hop, not a second interpreter. Each daemon
trivial cell is printed as a ratio to the embedded one measured in the same run.

The daemon's per-tenant request rate (50/s, burst 100 by default) would refuse a run of
more than a hundred requests, so this daemon is started with a rate it cannot reach
(``BENCH_LIMITS``); every other limit, and authentication on every request, is the
default's.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import threading
from pathlib import Path

from figures import Figure, Table, timed

from rlmbox.daemon.client import Client
from rlmbox.daemon.lifecycle import Daemon, DaemonConfig, load_policies
from rlmbox.daemon.limits import DaemonLimits
from rlmbox.daemon.store import Store
from rlmbox.lm.scripted import ScriptedLM
from rlmbox.runtime.runtime import Runtime

SYSTEM = "rlmbox process (cell durability)"
EMBEDDED_CELL = "embedded trivial cell"
# the request rate is raised above what one client can send, so no request is refused
BENCH_LIMITS = DaemonLimits(requests_per_s_per_tenant=1e6, request_burst_per_tenant=10**6)


def embedded(table: Table, root: Path, sessions: int, cells: int) -> None:
    lm = ScriptedLM(default="ok")
    with Runtime("default", lm=lm, audit_dir=root / "embedded", pool_size=0) as rt:
        starts = timed(lambda: rt.session().close(), sessions)
        with rt.session() as s:
            s.exec("x = 1")
            trivial = timed(lambda: s.exec("x = 1"), cells)
            llm = timed(lambda: s.exec("llm_query('hi')"), cells)
    table.floors[EMBEDDED_CELL] = Figure(table.title, "floor", EMBEDDED_CELL, tuple(trivial),
                                         note="Session.exec('x = 1'), Runtime in this process")
    table.add(f"{SYSTEM}, embedded", "session start + close", starts)
    table.add(f"{SYSTEM}, embedded", "exec trivial cell", trivial)
    table.add(f"{SYSTEM}, embedded", "exec cell with one llm_query", llm)


def through(table: Table, client: Client, label: str, sessions: int, cells: int) -> None:
    def start_close() -> None:
        client.close_session(client.create_session()["id"])

    starts = timed(start_close, sessions)
    sid = client.create_session()["id"]
    client.exec(sid, "x = 1")
    trivial = timed(lambda: client.exec(sid, "x = 1"), cells)
    llm = timed(lambda: client.exec(sid, "llm_query('hi')"), cells)
    client.close_session(sid)
    table.add(f"{SYSTEM}, {label}", "session start + close", starts)
    table.add(f"{SYSTEM}, {label}", "exec trivial cell", trivial, floor=(EMBEDDED_CELL,))
    table.add(f"{SYSTEM}, {label}", "exec cell with one llm_query", llm)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--cells", type=int, default=50)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="rbx-bench-"))
    table = Table("daemon against embedded")
    embedded(table, root, args.sessions, args.cells)
    config = DaemonConfig(state_dir=root / "state", socket=root / "d.sock",
                          tcp="127.0.0.1:0", policies=load_policies(["default"]),
                          lm=ScriptedLM(default="ok"), limits=BENCH_LIMITS)
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
            through(table, client, "daemon, unix socket", args.sessions, args.cells)
        assert daemon.tcp_address is not None
        url = f"http://127.0.0.1:{daemon.tcp_address[1]}"
        with Client(url=url, token=token) as client:
            through(table, client, "daemon, loopback TCP", args.sessions, args.cells)
    finally:
        asyncio.run_coroutine_threadsafe(daemon.stop(), loop).result(120)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        shutil.rmtree(root, ignore_errors=True)
    table.print("the default preset (process backend, cell durability), no pool; the "
                "daemon on an event-loop thread of this process, its tenant request rate "
                "raised out of reach (every other limit the default's)")


if __name__ == "__main__":
    main()
