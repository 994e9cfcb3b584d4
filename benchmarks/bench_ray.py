"""What running sessions on a Ray cluster costs over the embedded ``Runtime``.

    PYTHONPATH=. python benchmarks/bench_ray.py [--cells 30] [--sessions 6]

On this machine, process backend, a simulated cluster (``ray.cluster_utils.Cluster``,
every node a raylet on 127.0.0.1). Measures, each against the embedded ``Runtime`` in the
same run: a trivial cell's round trip; a cell of 10 host calls (they run on the node, so
the cluster adds nothing per call, only per cell); session start from a node's warm pool;
what the two placement designs cost (a placement group + a call to the node's existing
actor, against a new actor per session); what a tree ledger in a Ray actor would cost per
host call against the in-process ``Ledger`` (why children stay on their root's node); and
N concurrent sessions on 1 vs 3 simulated nodes. All nodes share this machine's cores, so
3 nodes show overhead, not speed-up. Ends with a paper estimate for 1,000 nodes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")   # keep the driver on loopback

import ray
from figures import Figure, Table, timed
from ray.cluster_utils import Cluster

from rlmbox.cluster import RayRuntime
from rlmbox.cluster.admission import reserve_slot
from rlmbox.cluster.node import NodeHost
from rlmbox.policies.model import load_policy
from rlmbox.runtime.ledger import Ledger
from rlmbox.runtime.runtime import Runtime

TOOL_CELL = "for i in range(10):\n    shout('x')"
SYSTEM = "rlmbox process"
EMBEDDED_CELL = "embedded trivial cell"
EMBEDDED_CALL = "embedded host call"
EMBEDDED_START = "embedded warm start"
FLOORS = {"cell": EMBEDDED_CELL, "call": EMBEDDED_CALL, "start": EMBEDDED_START}


def shout(text: str) -> str:
    return text.upper()


@contextmanager
def cluster(nodes: int, slots: int) -> Iterator[None]:
    temp_dir = tempfile.mkdtemp(prefix="rb", dir="/tmp")
    # Ray writes the head's address under <RAY_TMPDIR>/ray whatever the nodes' temp_dir,
    # and does not create it: on a fresh machine (no /tmp/ray) the cluster did not start
    os.environ["RAY_TMPDIR"] = temp_dir
    os.makedirs(os.path.join(temp_dir, "ray"), exist_ok=True)
    args: dict[str, Any] = {
        "num_cpus": 0, "node_ip_address": "127.0.0.1", "include_dashboard": False,
        "resources": {"rlmbox_slot": slots}, "object_store_memory": 80 * 1024 * 1024,
        "temp_dir": temp_dir}
    made = Cluster(initialize_head=True, head_node_args=args)
    try:
        for _ in range(nodes - 1):
            made.add_node(**args)
        ray.init(address=made.address, _node_ip_address="127.0.0.1", log_to_driver=False)
        yield
    finally:
        ray.shutdown()
        made.shutdown()  # type: ignore[no-untyped-call]  # Ray leaves it unannotated
        shutil.rmtree(temp_dir, ignore_errors=True)


def add(table: Table, label: str, measure: str, samples: list[float], kind: str) -> None:
    """A row; the embedded runtime's rows are the floors the cluster's are compared with."""
    if label == "embedded":
        table.floors[FLOORS[kind]] = Figure(table.title, "floor", FLOORS[kind],
                                            tuple(samples), note="embedded Runtime, same run")
    table.add(f"{SYSTEM}, {label}", measure, samples,
              floor=() if label == "embedded" else (FLOORS[kind],))


def cells(table: Table, rt: Any, label: str, n: int) -> None:
    with rt.session(tools={"shout": shout}) as s:
        s.exec("1")
        add(table, label, "trivial cell round trip", timed(lambda: s.exec("x = 1"), n), "cell")
        calls = timed(lambda: s.exec(TOOL_CELL), n)
        add(table, label, "host call (a cell of 10 tool calls / 10)",
            [c / 10 for c in calls], "call")


def warm_starts(table: Table, rt: Any, label: str, n: int) -> None:
    rt.session().close()   # the node actor (or runtime) and its pool exist now
    samples = []
    for _ in range(n):
        time.sleep(0.5)   # the pool refills
        started = time.perf_counter()
        session = rt.session()
        samples.append(time.perf_counter() - started)
        session.close()
    add(table, label, "session start, warm pool of 2", samples, "start")


def placement_designs(table: Table, root: Path, n: int) -> None:
    node_id = ray.get_runtime_context().get_node_id()
    existing: Any = ray.remote(NodeHost).options(num_cpus=0, max_concurrency=8).remote(
        node_id, load_policy("default"), str(root / "designs-node"), None, None, 0, None,
        "cell", False)
    ray.get(existing.ready.remote())

    def slot_and_call() -> None:
        slot = reserve_slot("rlmbox_slot", 30)
        ray.get(existing.ready.remote())
        slot.release()

    def actor_per_session() -> None:
        actor: Any = ray.remote(NodeHost).options(num_cpus=0).remote(
            node_id, load_policy("default"), str(root / f"designs-{time.monotonic_ns()}"),
            None, None, 0, None, "cell", False)
        ray.get(actor.ready.remote())
        ray.kill(actor)

    table.add("ray, 1 node", "placement group + call to the node's actor (chosen)",
              timed(slot_and_call, n))
    table.add("ray, 1 node", "a new actor per session (started, ready, killed)",
              timed(actor_per_session, max(3, n // 5)))
    ray.kill(existing)


@ray.remote(num_cpus=0)
class LedgerActor:
    def __init__(self) -> None:
        self.ledger = Ledger(load_policy("default").budgets)

    def reserve_commit(self) -> None:
        self.ledger.commit(self.ledger.reserve("llm_query", depth=0), input_tokens=10)


def ledger_cost(table: Table, n: int) -> None:
    local = Ledger(load_policy("default").budgets)
    remote = LedgerActor.remote()   # type: ignore[attr-defined]
    ray.get(remote.reserve_commit.remote())
    table.add("tree ledger", "in-process: reserve + commit (chosen)", timed(
        lambda: local.commit(local.reserve("llm_query", depth=0), input_tokens=10), n))
    table.add("tree ledger", "in a Ray actor: reserve + commit",
              timed(lambda: ray.get(remote.reserve_commit.remote()), n))


def concurrent(table: Table, rt: RayRuntime, label: str, sessions: int, n: int) -> None:
    opened = [rt.session() for _ in range(sessions)]

    def run(s: Any) -> None:
        for _ in range(n):
            s.exec("x = sum(range(1000))")

    started = time.perf_counter()
    threads = [threading.Thread(target=run, args=(s,)) for s in opened]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    for s in opened:
        s.close()
    table.add(f"{SYSTEM}, {label}", f"{sessions} sessions x {n} cells at once, throughput",
              [sessions * n / wall], unit="cells/s",
              note="nodes share this machine's cores: overhead, not speed-up")


PAPER = """
Paper estimate at 1,000 nodes (not measured; each assumption stated):
- a node of 16 cores / 64 GiB, process backend, the default policy (memory_mb 1024,
  pids 128). A cap is a ceiling, not use: RLM cells mostly wait on LM calls and a typical
  REPL holds well under 256 MiB. Slots per node = what the operator can afford if every
  session hit its cap: ~50 (51 GiB of caps, ~13 GiB for the node actor, Ray, page cache);
  ~4x that (~200) with memory_mb 256. gVisor adds ~30-50 MiB per sandbox.
- 1,000 such nodes with rlmbox_slot 50: ~50,000 concurrent sessions (200,000 at 256 MiB).
- the driver is the first bottleneck, not the nodes: every cell is one actor call through
  it (the round trip above). Assuming ~1,000 cells/s per driver process, 50,000 sessions
  from one driver can each run a cell every ~50 s; run many drivers (one per job or per
  RL rollout worker), since node actors are per driver.
- placement: one placement group per session; this run measured one in milliseconds on
  an idle simulated cluster. Ray's GCS rate at 1,000 nodes is assumed, not measured here:
  at 100 groups/s a cold start of 50,000 sessions takes ~8 minutes, so keep sessions
  long-lived and let warm pools hide sandbox start.
- audit: each node writes its own log (no cross-node contention); the driver's index
  takes ~2 fsynced records per session (placement, and an anchor at its end).
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=30)
    parser.add_argument("--sessions", type=int, default=6)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    policy = load_policy("default")
    table = Table("sessions on a Ray cluster against embedded")
    try:
        with Runtime(policy, audit_dir=root / "embedded", pool_size=0) as rt:
            cells(table, rt, "embedded", args.cells)
        with Runtime(policy, audit_dir=root / "embedded-warm", pool_size=2) as rt:
            warm_starts(table, rt, "embedded", 5)
        with cluster(nodes=1, slots=args.sessions):
            with RayRuntime(policy, audit_dir=root / "ray1", pool_size=0) as rt:
                cells(table, rt, "ray, 1 node", args.cells)
            with RayRuntime(policy, audit_dir=root / "ray1-warm", pool_size=2) as rt:
                warm_starts(table, rt, "ray, 1 node", 5)
            placement_designs(table, root, 20)
            ledger_cost(table, 200)
            with RayRuntime(policy, audit_dir=root / "ray1-conc", pool_size=0) as rt:
                concurrent(table, rt, "ray, 1 node", args.sessions, args.cells)
        with cluster(nodes=3, slots=max(1, args.sessions // 3)), \
                RayRuntime(policy, audit_dir=root / "ray3-conc", pool_size=0) as rt:
            concurrent(table, rt, "ray, 3 nodes", args.sessions, args.cells)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    table.print(f"the default preset (process backend, cell durability); a simulated "
                f"cluster: every node a raylet on 127.0.0.1 sharing {os.cpu_count()} cores")
    print(PAPER)


if __name__ == "__main__":
    main()
