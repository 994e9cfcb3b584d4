"""Review s7c: attacks on the cluster (RayRuntime, its node actors, the Ray it runs on).

Each test performs one attack and asserts the promise. A strict xfail marks a promise
broken today (it turns into a failure the moment the promise holds; then remove the
mark); a test without one is an attack that held, on a promise that had no test.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from live_processes import is_live

from rlmbox.audit.reader import iter_records
from tests.cluster.conftest import node_args, ray_processes
from tests.cluster.test_node_loss import DRIVER

Make = Callable[..., Any]

LOOPBACK_V4 = "0100007F"            # 127.0.0.1 as /proc/net/tcp writes it
LOOPBACK_V6 = "00000000000000000000000001000000"   # ::1
LISTEN = "0A"


def _socket_inodes(pid: int) -> set[str]:
    inodes: set[str] = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[len("socket:["):-1])
    return inodes


def _tcp_sockets() -> list[tuple[str, str, str, str]]:
    """``(local address, remote address, state, inode)`` of every TCP socket."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            found.append((fields[1], fields[2], fields[3], fields[9]))
    return found


def _loopback(address: str) -> bool:
    host = address.split(":", maxsplit=1)[0]
    return host in (LOOPBACK_V4, LOOPBACK_V6) or (
        len(host) == 32 and host.startswith("0000000000000000FFFF0000") and
        host.endswith("0100007F"))   # ::ffff:127.0.0.1


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:90]
    except OSError:
        return "?"


def test_every_ray_listener_of_the_cluster_is_on_the_loopback(
        make_ray_runtime: Make) -> None:
    """The promise: everything Ray needs binds to 127.0.0.1 (the simulated cluster is
    "bound to 127.0.0.1", README and scale-out.md). Attack: with sessions running on every
    node, list every TCP listener a Ray process (or this driver) holds."""
    rt = make_ray_runtime()
    sessions = [rt.session() for _ in range(3)]
    for session in sessions:
        assert session.exec("print(1)").ok
    pids = [*ray_processes(os.environ["RLMBOX_TEST_RAY_DIR"]), os.getpid()]
    owner = {inode: pid for pid in pids for inode in _socket_inodes(pid)}
    listening = [local for local, _, state, inode in _tcp_sockets()
                 if state == LISTEN and inode in owner]
    assert len(listening) >= 3, f"found too few of Ray's listeners to judge: {listening}"
    exposed = sorted({(local, _cmdline(owner[inode])) for local, _, state, inode
                      in _tcp_sockets()
                      if state == LISTEN and inode in owner and not _loopback(local)})
    outbound = sorted({(remote, _cmdline(owner[inode])) for _, remote, state, inode
                       in _tcp_sockets()
                       if state != LISTEN and inode in owner and not _loopback(remote)})
    for session in sessions:
        session.close()
    assert len({owner[i] for _, _, state, i in _tcp_sockets()
                if state == LISTEN and i in owner}) >= 3, "the nodes' listeners were not seen"
    assert not outbound, f"Ray connects off the machine: {outbound}"
    assert not exposed, f"Ray listens beyond the loopback: {exposed}"


IDLE_DOOMED = "rlmbox_slot_s7c_idle_doomed"


def test_an_idle_session_whose_node_died_is_recorded_lost_when_closed(
        ray_cluster: Any, make_ray_runtime: Make) -> None:
    """The promise (scale-out.md, Failures): when a node dies, every session on it ends
    lost and each loss is an ERROR ``session.lost`` record in the index. Attack: the node
    dies while no cell runs; the first thing the driver does with the session is close
    it."""
    import ray

    doomed = ray_cluster.add_node(**node_args(os.environ["RLMBOX_TEST_RAY_DIR"],
                                              {IDLE_DOOMED: 1}))
    try:
        rt = make_ray_runtime(slot_resource=IDLE_DOOMED)
        session = rt.session()
        assert session.node_id == doomed.node_id
        assert session.exec("x = 1").ok
        doomed.kill_raylet()
        deadline = time.monotonic() + 60
        while any(n["NodeID"] == doomed.node_id and n["Alive"]
                  for n in ray.nodes()):  # type: ignore[no-untyped-call]
            assert time.monotonic() < deadline, "Ray never saw the node die"
            time.sleep(0.2)
        session.close()
        lost = [r for r in iter_records(rt.audit_dir / "index")
                if r["event"] == "session.lost" and r["session"] == session.id]
        assert lost, f"the loss of {session.id} is not in the index; state {session.state}"
    finally:
        ray_cluster.remove_node(doomed, allow_graceful=False)


# a child RLM's root model: one cell that sleeps and answers when it ran (wall clock: the
# node's sandboxes and this process share it on the simulated cluster)
CHILD_CELL = ("```repl\nimport time\nt0 = time.time()\ntime.sleep(1.5)\n"
              "FINAL('%r %r' % (t0, time.time()))\n```")


def test_rlm_query_children_count_against_the_tenants_cells_on_the_cluster(
        ray_cluster: Any, tmp_path: Path) -> None:
    """The promise (docs/daemon.md Limits, item 2; scale-out.md: the daemon does "the
    session and cell caps ... the same way here"; only the *session* caps are listed as
    not counting children): a tenant runs at most ``--max-cells-per-tenant`` cells at once,
    ``rlm_query`` children included. Attack: a cap of one, one cell calling
    ``rlm_query_batched`` with four prompts, on ``rlmbox serve --ray``."""
    from tests.cluster.test_serve_on_ray import serving_rlm_children

    with serving_rlm_children(tmp_path, ray_cluster.address, CHILD_CELL,
                              cells_per_tenant=1) as daemon, daemon.client("alice") as alice:
        sid = alice.create_session()["id"]
        result = alice.exec(sid, "for r in rlm_query_batched(['a', 'b', 'c', 'd']):\n"
                                 "    print(r)")
        alice.close_session(sid)
    assert result.status == "ok", result.error
    spans = [tuple(float(x) for x in line.split()) for line in result.stdout.splitlines()]
    assert len(spans) == 4, result.stdout
    at_once = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
    assert at_once <= 1, f"{at_once} child cells ran at once under a cap of one: {spans}"


def test_a_remote_session_is_running_while_a_concurrent_exec_runs(
        make_ray_runtime: Make) -> None:
    """The promise (scale-out.md, "The same session API"): ``RemoteSession`` has the states
    of ``Session``; a ``Session`` is ``running`` while any cell of it runs (a second exec
    waits for the first, then runs). Attack: two threads exec at once; the first cell
    ends, the second still runs."""
    import threading

    from rlmbox.cluster import RemoteSessionState

    rt = make_ray_runtime()
    with rt.session() as session:
        first = threading.Thread(target=session.exec, args=("import time\ntime.sleep(1)",))
        second = threading.Thread(target=session.exec, args=("import time\ntime.sleep(4)",))
        first.start()
        time.sleep(0.3)
        second.start()
        first.join(30)
        time.sleep(1.0)   # the first cell ended a while ago; the second one runs
        state = session.state
        second.join(30)
        assert state is RemoteSessionState.RUNNING, state


def test_serve_on_ray_listens_on_the_loopback_only(ray_cluster: Any, tmp_path: Path) -> None:
    """The promise (docs/daemon.md: TCP is loopback only, a non-loopback address is
    refused; the test cluster is bound to 127.0.0.1): the daemon exposes nothing beyond
    the loopback. Attack: ``rlmbox serve --ray`` on the 127.0.0.1 cluster with a session
    open; list every TCP listener of the daemon's process."""
    import shutil
    import tempfile

    from tests.cluster.test_serve_on_ray import ServeOnRay
    from tests.conftest import write_policy

    short = Path(tempfile.mkdtemp(prefix="rbx-s7c-", dir="/tmp"))
    daemon = ServeOnRay(short, ray_cluster.address,
                        write_policy(tmp_path, isolation={"backend": "process"}))
    try:
        with daemon.client("alice") as alice:
            sid = alice.create_session()["id"]
            assert alice.exec(sid, "print(1)").stdout == "1\n"
            inodes = _socket_inodes(daemon.process.proc.pid)
            exposed = sorted({local for local, _, state, inode in _tcp_sockets()
                              if state == LISTEN and inode in inodes
                              and not _loopback(local)})
            alice.close_session(sid)
        assert not exposed, f"the daemon listens beyond the loopback: {exposed}"
    finally:
        assert daemon.process.terminate() == 0
        shutil.rmtree(short, ignore_errors=True)


def test_a_dead_driver_takes_its_docker_sandboxes_with_it(
        ray_cluster: Any, tmp_path: Path) -> None:
    """The promise (scale-out.md, Failures: Docker sandboxes die with their node actor,
    "its driver gone" included); tested before for a killed raylet only. Attack: a
    driver process with a ``docker-runc`` session whose cell ignores the usual signals is
    SIGKILLed mid-cell."""
    import subprocess
    import sys

    import docker

    from tests.cluster.test_node_loss_docker import (
        REAP_WITHIN_S,
        STUBBORN_CELL,
        container_pids,
        container_running,
        docker_policy,
    )
    from tests.security.harness import require_backend

    require_backend("docker-runc")
    engine = docker.from_env(timeout=30)
    repo = Path(__file__).resolve().parents[2]
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(docker_policy(tmp_path, "runc")),
         ray_cluster.address, str(tmp_path / "audit"), STUBBORN_CELL],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(repo)})
    container = ""
    try:
        assert driver.stdout is not None
        name = driver.stdout.readline().strip()
        assert name, "the driver started no session"
        container = engine.api.inspect_container(name)["Id"]
        found_by = time.monotonic() + 10
        while not container_pids(container) and time.monotonic() < found_by:
            time.sleep(0.1)
        assert container_pids(container), "the container's processes were not found"
        time.sleep(1.5)   # the stubborn cell runs
    finally:
        driver.kill()
        driver.wait()
        if driver.stdout is not None:
            driver.stdout.close()
    try:
        killed_at = time.monotonic()
        # Ray notices a dead driver within a few seconds, then kills its actors
        while (container_pids(container) or container_running(engine, container)) and \
                time.monotonic() - killed_at < REAP_WITHIN_S + 20:
            time.sleep(0.2)
        assert not container_pids(container), "the container outlived its driver"
        assert not container_running(engine, container)
    finally:
        with contextlib.suppress(Exception):
            engine.api.remove_container(container, force=True, v=True)
        engine.close()


@pytest.mark.parametrize("where", ["a cell's record", "the last record", "the tail cut"])
def test_a_record_rewritten_or_the_tail_cut_on_one_node_is_detected(
        collected: Path, tmp_path: Path, where: str) -> None:
    """The promise (scale-out.md, Audit across nodes; audit/collected.py): a record
    rewritten on any node, the tail included, fails ``rlmbox audit verify --cluster``;
    tested before for a deleted record only. Attack: a forger on one node rewrites a
    ``code.exec`` record (or the log's last record, or cuts it off), relinks the chain
    after it and drops the checkpoints that no longer fit."""
    import shutil

    from rlmbox.audit.collected import verify_collected
    from rlmbox.audit.files import CHECKPOINTS
    from rlmbox.audit.verify import verify_log
    from tests.audit.tamper_helpers import encode, read, record, relink, write

    copy = tmp_path / "copy"
    shutil.copytree(collected, copy)
    victim = sorted((copy / "nodes").iterdir())[-1]
    lines = read(victim)
    if where == "the tail cut":
        forged = lines[:-1]
    else:
        at = (next(i for i, line in enumerate(lines) if b'"event":"code.exec"' in line)
              if where == "a cell's record" else len(lines) - 1)
        obj = record(lines[at])
        obj["forged"] = True   # what it said, changed
        forged = relink([*lines[:at], encode(obj), *lines[at + 1:]], at)
    write(victim, forged)
    (victim / CHECKPOINTS).unlink(missing_ok=True)   # a forger drops what no longer fits
    assert verify_log(victim, check_bodies=False).ok, "the chain alone cannot see it"
    report = verify_collected(copy)
    assert not report.ok
    assert {name for name, r in report.nodes.items() if not r.ok} == {
        f"nodes/{victim.name}"}


def _quietly(fn: Callable[..., Any], *args: Any) -> None:
    with contextlib.suppress(Exception):
        fn(*args)


TREE_DOOMED = "rlmbox_slot_s7c_tree_doomed"
SLEEPY_CHILD = "```repl\nimport time\ntime.sleep(60)\nFINAL('late')\n```"


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def test_a_node_lost_mid_child_cell_leaves_no_child_or_pool_sandbox(
        ray_cluster: Any, make_ray_runtime: Make, tmp_path: Path) -> None:
    """The promise (scale-out.md, Failures): no process of a lost node's sandboxes
    survives; tested before for root sessions with no warm pool. Attack: a warm pool of
    two and an ``rlm_query`` child whose cell sleeps in its own sandbox when the node's
    raylet is killed; every process below that raylet must end."""
    import functools
    import threading

    from rlmbox.lm.scripted import ScriptedLM
    from tests.conftest import write_policy

    policy = write_policy(
        tmp_path, isolation={"backend": "process"}, limits={"cell_timeout_s": 120},
        rules=[{"id": "permit-rlm", "effect": "permit", "function": "rlm_query"}],
        budgets={"tree": {"calls": 20, "max_depth": 1, "max_concurrent": 4}})
    doomed = ray_cluster.add_node(**node_args(os.environ["RLMBOX_TEST_RAY_DIR"],
                                              {TREE_DOOMED: 1}))
    try:
        rt = make_ray_runtime(policy, slot_resource=TREE_DOOMED, pool_size=2,
                              rlm_lm=functools.partial(ScriptedLM, default=SLEEPY_CHILD))
        session = rt.session()
        assert session.exec("x = 1").ok
        raylet = doomed.all_processes["raylet"][0].process.pid

        def jails() -> int:
            return sum("bwrap" in _cmdline(p) for p in _descendants(raylet))

        deadline = time.monotonic() + 30
        while jails() < 3:   # the session's and the warm pool's
            assert time.monotonic() < deadline, "the pool's jails never ran"
            time.sleep(0.2)
        time.sleep(1.0)
        before = jails()
        worker = threading.Thread(target=_quietly, args=(session.exec, "rlm_query('go')"))
        worker.start()
        while jails() <= before:   # the child's sandbox
            assert time.monotonic() < deadline + 30, "the child's jail never ran"
            time.sleep(0.2)
        time.sleep(1.0)   # its cell sleeps
        below = _descendants(raylet)
        doomed.kill_raylet()
        deadline = time.monotonic() + 30
        while (left := {p for p in below if is_live(p)}) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not left, f"outlived their node: {[(p, _cmdline(p)) for p in left]}"
        worker.join(60)
    finally:
        ray_cluster.remove_node(doomed, allow_graceful=False)


def test_importing_the_cluster_package_turns_ray_usage_reports_off() -> None:
    """Ray reports usage by default; ``import rlmbox.cluster`` turns that off for the
    driver and the Ray processes it starts, unless the operator chose (the variable set)."""
    import subprocess
    import sys

    probe = ("import os, rlmbox.cluster\n"
             "from ray._common.usage import usage_lib\n"
             "print(os.environ['RAY_USAGE_STATS_ENABLED'], usage_lib.usage_stats_enabled())")
    unset = {k: v for k, v in os.environ.items() if k != "RAY_USAGE_STATS_ENABLED"}
    chosen = {**unset, "RAY_USAGE_STATS_ENABLED": "1"}
    outputs = [subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                              text=True, check=True, timeout=120).stdout.split()
               for env in (unset, chosen)]
    assert outputs == [["0", "False"], ["1", "True"]]
