"""Docker backend timings: cold create, start of a pre-created container, frame round trip.

Runs the package's real agent on the real engine, for runc and runsc, and prints a table
with the machine it ran on; runc is measured once per transport (attached stdio and the
per-sandbox Unix socket) unless ``--transport`` names one. Usage:
python benchmarks/bench_docker.py [--rounds N] [--trips N] [--transport stdio|socket|both]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

from rlmbox.sandboxes.base import SandboxSpec
from rlmbox.sandboxes.docker.backend import DockerBackend, DockerSandbox
from rlmbox.sandboxes.docker.engine import connect, runtimes


def _exec(sandbox: DockerSandbox, cell: str, code: str) -> None:
    sandbox.send({"t": "exec", "id": cell, "code": code})
    while True:
        frame = sandbox.recv(60)
        assert frame is not None
        if frame["t"] == "result" and frame["id"] == cell:
            assert frame["status"] == "ok", frame
            return


def bench(runtime: str, rounds: int, trips: int, transport: str) -> dict[str, float]:
    backend = DockerBackend(runtime, transport=transport)
    backend.collect_garbage()
    cold: list[float] = []
    warm: list[float] = []
    prepare: list[float] = []
    for _ in range(rounds):
        started = time.perf_counter()
        sandbox = backend.create(SandboxSpec())
        cold.append(time.perf_counter() - started)
        sandbox.kill()
        started = time.perf_counter()
        prepared = backend.prepare(SandboxSpec())
        prepare.append(time.perf_counter() - started)
        started = time.perf_counter()
        sandbox = backend.start(prepared)
        warm.append(time.perf_counter() - started)
        sandbox.kill()
    sandbox_ = backend.create(SandboxSpec())
    try:
        sandbox_.send({"t": "init", "id": "i", "config": {"functions": ["echo"]}})
        while (frame := sandbox_.recv(60)) is not None and frame["t"] != "result":
            pass
        for i in range(20):
            _exec(sandbox_, f"w{i}", "pass")
        trip: list[float] = []
        for i in range(trips):
            started = time.perf_counter()
            _exec(sandbox_, f"c{i}", "pass")
            trip.append(time.perf_counter() - started)
        call = _host_call_trips(sandbox_, trips)
    finally:
        sandbox_.kill()
    return {"cold create": statistics.median(cold),
            "prepare (create+attach)": statistics.median(prepare),
            "start prepared + ready": statistics.median(warm),
            "trivial cell round trip": statistics.median(trip),
            "cell p99": _p99(trip),
            "host call round trip": statistics.median(call),
            "host call p99": _p99(call)}


def _host_call_trips(sandbox: DockerSandbox, trips: int) -> list[float]:
    """One cell makes ``trips`` host calls; each is timed inside, from call to reply."""
    code = (f"import time\nts = []\nfor i in range({trips}):\n    t = time.perf_counter()\n"
            "    echo(i)\n    ts.append(time.perf_counter() - t)\nFINAL(ts)")
    sandbox.send({"t": "exec", "id": "calls", "code": code})
    while True:
        frame = sandbox.recv(60)
        assert frame is not None
        if frame["t"] == "call":
            sandbox.send({"t": "reply", "call": frame["call"], "ok": True,
                          "value": frame["args"][0]})
        elif frame["t"] == "result":
            assert frame["status"] == "ok", frame
            times: list[float] = frame["answer"]
            return times


def _p99(values: list[float]) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * 0.99))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--trips", type=int, default=500)
    parser.add_argument("--transport", choices=("stdio", "socket", "both"), default="both",
                        help="runc's transport(s); runsc always runs stdio")
    args = parser.parse_args()
    client = connect()
    info = client.info()
    print(f"machine: {platform.node()} Linux {platform.release()}, {info['NCPU']} CPUs, "
          f"{info['MemTotal'] / 2**30:.1f} GiB; engine {info['ServerVersion']}, "
          f"cgroup v{info.get('CgroupVersion', '?')}, storage {info['Driver']}")
    available = runtimes(client)
    transports = ("stdio", "socket") if args.transport == "both" else (args.transport,)
    columns = [("runc", t) for t in transports] + [("runsc", "stdio")]
    results = {f"{rt}/{tr}": bench(rt, args.rounds, args.trips, tr) for rt, tr in columns
               if rt in available}
    print(f"medians of {args.rounds} starts and {args.trips} round trips (real agent)\n")
    rows = next(iter(results.values())).keys()
    print(f"{'measure':<28}" + "".join(f"{rt:>14}" for rt in results))  # runtime/transport
    for row in rows:
        cells = "".join(f"{_fmt(results[rt][row]):>14}" for rt in results)
        print(f"{row:<28}{cells}")


def _fmt(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.0f} us"


if __name__ == "__main__":
    main()
