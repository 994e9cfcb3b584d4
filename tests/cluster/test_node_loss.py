"""A node that dies mid-cell: its sessions end lost, the loss is audited, no sandbox
process survives, and the runtime goes on placing sessions on the nodes left."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from live_processes import in_cgroup_named, is_live

from rlmbox.audit.reader import iter_records
from rlmbox.cluster import RemoteSessionState
from rlmbox.errors import SessionLost
from tests.cluster.conftest import node_args

DOOMED = "rlmbox_slot_doomed"
REPO = Path(__file__).resolve().parents[2]


def sandbox_pids(sandbox_id: str) -> set[int]:
    """Live processes whose cgroup names the sandbox (the process backend's jail)."""
    return in_cgroup_named(sandbox_id)


def test_killing_a_nodes_raylet_mid_cell_loses_its_sessions_audited_and_leaves_no_sandbox(
        ray_cluster: Any, make_ray_runtime: Callable[..., Any], tmp_path: Path) -> None:
    doomed = ray_cluster.add_node(**node_args(os.environ["RLMBOX_TEST_RAY_DIR"],
                                              {DOOMED: 2}))
    try:
        rt = make_ray_runtime(slot_resource=DOOMED)
        running, idle = rt.session(), rt.session()
        assert running.node_id == idle.node_id == doomed.node_id
        assert running.exec("x = 1").status == "ok"
        pids = sandbox_pids(running.placement.sandbox_id) | sandbox_pids(
            idle.placement.sandbox_id)
        assert pids, "the sandboxes' processes were not found"
        outcome: list[BaseException] = []

        def cell() -> None:
            try:
                running.exec("import time\ntime.sleep(30)")
            except BaseException as exc:
                outcome.append(exc)

        worker = threading.Thread(target=cell)
        worker.start()
        time.sleep(1.0)   # the cell is running on the node
        killed_at = time.monotonic()
        doomed.kill_raylet()
        worker.join(timeout=60)
        assert not worker.is_alive(), "exec did not return after its node died"
        assert len(outcome) == 1
        assert isinstance(outcome[0], SessionLost), outcome
        assert time.monotonic() - killed_at < 30
        assert running.state is RemoteSessionState.LOST
        assert running.death_reason
        assert doomed.node_id[:12] in running.death_reason
        # the other session on that node is lost too, without running anything
        assert idle.state is RemoteSessionState.LOST
        with pytest.raises(SessionLost, match="was lost"):
            idle.exec("1")

        deadline = time.monotonic() + 20
        while (left := {p for p in pids if is_live(p)}) and \
                time.monotonic() < deadline:
            time.sleep(0.2)
        assert not left, f"sandbox processes outlived their node: {left}"

        lost = [r for r in iter_records(rt.audit_dir / "index")
                if r["event"] == "session.lost"]
        assert {r["session"] for r in lost} == {running.id, idle.id}
        assert all(r["node"] == doomed.node_id and r["severity"] == "ERROR" and
                   "died" in r["reason"] for r in lost)
    finally:
        ray_cluster.remove_node(doomed, allow_graceful=False)


DRIVER = """
import sys, time
from rlmbox.cluster import RayRuntime
rt = RayRuntime(sys.argv[1], address=sys.argv[2], audit_dir=sys.argv[3], pool_size=0)
session = rt.session()
session.exec("x = 1")
print(session.placement.sandbox_id, flush=True)
if len(sys.argv) > 4:
    session.exec(sys.argv[4])   # a cell the driver dies in
time.sleep(600)
"""


def test_a_dead_driver_takes_its_sessions_sandboxes_with_it(
        ray_cluster: Any, cluster_policy: Path, tmp_path: Path) -> None:
    """Ray's ownership: the node actors die with the driver that created them, and the
    sandboxes with their node actor."""
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(cluster_policy), ray_cluster.address,
         str(tmp_path / "audit")], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert driver.stdout is not None
        sandbox_id = driver.stdout.readline().strip()
        assert sandbox_id
        found_by = time.monotonic() + 10   # a loaded host may still be listing them
        while not (pids := sandbox_pids(sandbox_id)) and time.monotonic() < found_by:
            time.sleep(0.1)
        assert pids, "the driver's sandbox was not found"
    finally:
        driver.kill()
        driver.wait()
        if driver.stdout is not None:
            driver.stdout.close()
    deadline = time.monotonic() + 30
    while (left := {p for p in pids if is_live(p)}) and \
            time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"sandbox processes outlived their driver: {left}"
