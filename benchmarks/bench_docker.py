"""Transport only: Docker backend timings without the Session, policy, ledger or audit.

Cold create, start of a pre-created container, frame round trip, and a host call answered
by this script (an echo, not the dispatcher).
Runs the package's real agent on the real engine, for runc and runsc, and prints a table
with the machine it ran on; runc is measured once per transport (attached stdio and the
per-sandbox Unix socket) unless ``--transport`` names one. Usage:
python benchmarks/bench_docker.py [--rounds N] [--trips N] [--transport stdio|socket|both]
"""

from __future__ import annotations

import argparse
import platform
import time

from figures import Figure, Table
from floors import PIPE, pipe_round_trip

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


def bench(runtime: str, rounds: int, trips: int, transport: str) -> dict[str, list[float]]:
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
    return {"cold create": cold, "prepare (create+attach)": prepare,
            "start prepared + ready": warm, "trivial cell round trip": trip,
            "host call round trip (echo, timed inside)": call}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--trips", type=int, default=500)
    parser.add_argument("--transport", choices=("stdio", "socket", "both"), default="both",
                        help="runc's transport(s); runsc always runs stdio")
    args = parser.parse_args()
    client = connect()
    info = client.info()
    machine = (f"machine: {platform.node()} Linux {platform.release()}, {info['NCPU']} CPUs, "
               f"{info['MemTotal'] / 2**30:.1f} GiB; engine {info['ServerVersion']}, "
               f"cgroup v{info.get('CgroupVersion', '?')}, storage {info['Driver']}")
    available = runtimes(client)
    transports = ("stdio", "socket") if args.transport == "both" else (args.transport,)
    columns = [("runc", t) for t in transports] + [("runsc", "stdio")]
    table = Table("transport only: the Docker backend and its agent, no Session, policy, "
                  "ledger or audit")
    table.floors[PIPE] = Figure(table.title, "floor", PIPE, tuple(pipe_round_trip(args.trips)),
                                note="1 byte to a child and back, os.write/os.read")
    for runtime, transport in columns:
        if runtime not in available:
            continue
        for measure, samples in bench(runtime, args.rounds, args.trips, transport).items():
            table.add(f"docker/{runtime} over {transport} (transport only)", measure, samples,
                      floor=(PIPE,) if "round trip" in measure else ())
    table.print(f"{machine}\n{args.rounds} starts and {args.trips} round trips (real agent); "
                "not comparable with the full-stack rows: nothing here is decided or audited")


if __name__ == "__main__":
    main()
