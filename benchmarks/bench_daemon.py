"""What the daemon adds over embedded use: session start and exec round trips.

    PYTHONPATH=. python benchmarks/bench_daemon.py [--sessions 10] [--cells 50]

Runs the same work three ways on this machine, process backend, no warm pool: embedded
(``Runtime`` in this process), through the daemon over its Unix socket, and over loopback
TCP. Through the daemon each cell is timed twice, in turn: as ``POST .../exec`` and over
the exec socket (``GET /v1/exec/socket``, one kept WebSocket, the fast path ``Client.exec``
takes); over the Unix socket an embedded cell goes in turn with them, the floor each
daemon trivial cell is a ratio to (drift on a shared machine hits all three alike). The
daemon runs in this process on its own event-loop thread (what the tests do), so the
difference is HTTP (or WebSocket framing) + JSON + the thread hops, not a second
interpreter.

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
from collections.abc import Callable
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
EXEC_SOCKET_CELL = "exec trivial cell, exec socket"   # the fast path: targets.py reads it
# the request rate is raised above what one client can send, so no request is refused
BENCH_LIMITS = DaemonLimits(requests_per_s_per_tenant=1e6, request_burst_per_tenant=10**6)


def embedded(table: Table, rt: Runtime, sessions: int, cells: int) -> None:
    starts = timed(lambda: rt.session().close(), sessions)
    with rt.session() as s:
        s.exec("x = 1")
        trivial = timed(lambda: s.exec("x = 1"), cells)
        llm = timed(lambda: s.exec("llm_query('hi')"), cells)
    table.add(f"{SYSTEM}, embedded", "session start + close", starts)
    table.add(f"{SYSTEM}, embedded", "exec trivial cell", trivial)
    table.add(f"{SYSTEM}, embedded", "exec cell with one llm_query", llm)


def interleaved(calls: list[Callable[[], object]], n: int) -> list[list[float]]:
    """``n`` timed calls of each, in turn, so drift on a shared machine hits all alike."""
    samples: list[list[float]] = [[] for _ in calls]
    for _ in range(n):
        for call, times in zip(calls, samples, strict=True):
            times.extend(timed(call, 1))
    return samples


def through(table: Table, where: dict[str, str], token: str, label: str, sessions: int,
            cells: int, floor_cell: Callable[[], object] | None = None) -> None:
    """Each cell both ways, in turn: ``POST .../exec`` per cell, and the exec socket (a
    kept WebSocket, ``GET /v1/exec/socket``: the fast path, what ``Client.exec`` uses);
    with ``floor_cell``, an embedded cell in turn with them is the table's floor."""
    socket, url = where.get("socket"), where.get("url")
    with Client(token=token, socket=socket, url=url, exec_socket=False) as post, \
            Client(token=token, socket=socket, url=url) as kept:
        def start_close() -> None:
            post.close_session(post.create_session()["id"])

        starts = timed(start_close, sessions)
        sid = post.create_session()["id"]
        post.exec(sid, "x = 1")
        kept.exec(sid, "x = 1")
        trivial_calls: list[Callable[[], object]] = [lambda: post.exec(sid, "x = 1"),
                                                     lambda: kept.exec(sid, "x = 1")]
        if floor_cell is not None:
            floor_cell()
            trivial_calls.append(floor_cell)
        trivial, trivial_kept, *floor = interleaved(trivial_calls, cells)
        llm, llm_kept = interleaved([lambda: post.exec(sid, "llm_query('hi')"),
                                     lambda: kept.exec(sid, "llm_query('hi')")], cells)
        post.close_session(sid)
    if floor:
        table.floors[EMBEDDED_CELL] = Figure(
            table.title, "floor", EMBEDDED_CELL, tuple(floor[0]),
            note="Session.exec('x = 1'), Runtime in this process, in turn with the daemon's")
    table.add(f"{SYSTEM}, {label}", "session start + close", starts)
    table.add(f"{SYSTEM}, {label}", "exec trivial cell", trivial, floor=(EMBEDDED_CELL,),
              note="POST .../exec per cell (kept-alive HTTP)")
    table.add(f"{SYSTEM}, {label}", EXEC_SOCKET_CELL, trivial_kept, floor=(EMBEDDED_CELL,),
              note="GET /v1/exec/socket: one WebSocket, a message per cell")
    table.add(f"{SYSTEM}, {label}", "exec cell with one llm_query", llm,
              note="POST .../exec per cell")
    table.add(f"{SYSTEM}, {label}", "exec cell with one llm_query, exec socket", llm_kept)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--cells", type=int, default=50)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="rbx-bench-"))
    table = Table("daemon against embedded")
    rt = Runtime("default", lm=ScriptedLM(default="ok"), audit_dir=root / "embedded",
                 pool_size=0)
    embedded(table, rt, args.sessions, args.cells)
    floor_session = rt.session()
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
        through(table, {"socket": str(config.socket)}, token, "daemon, unix socket",
                args.sessions, args.cells, lambda: floor_session.exec("x = 1"))
        assert daemon.tcp_address is not None
        url = f"http://127.0.0.1:{daemon.tcp_address[1]}"
        through(table, {"url": url}, token, "daemon, loopback TCP", args.sessions, args.cells)
    finally:
        asyncio.run_coroutine_threadsafe(daemon.stop(), loop).result(120)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        floor_session.close()
        rt.close()
        shutil.rmtree(root, ignore_errors=True)
    table.print("the default preset (process backend, cell durability), no pool; the "
                "daemon on an event-loop thread of this process, its tenant request rate "
                "raised out of reach (every other limit the default's)")


if __name__ == "__main__":
    main()
