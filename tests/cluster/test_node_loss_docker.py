"""A node that dies mid-cell with Docker sandboxes (runc and runsc): no process of its
containers survives the node actor, whatever runs inside them, and the containers of a
node actor still alive are left alone.

A container is not a child of its node actor, so nothing kernel-side ties their lives:
the node actor's sandbox reaper (``rlmbox/cluster/sandbox_reaper.py``) does, host-side.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from live_processes import in_cgroup_named
from sandbox_reapers import reaper_pids

from rlmbox.errors import SessionLost
from rlmbox.sandboxes.owner import LABEL_OWNER
from tests.cluster.conftest import node_args
from tests.conftest import write_policy
from tests.security.harness import require_backend

REAP_WITHIN_S = 10.0
# a cell that keeps its container busy past the bound, and shrugs off the signals the
# agent could be sent (the kill must not depend on anything inside the sandbox)
STUBBORN_CELL = ("import signal, time\n"
                 "for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):\n"
                 "    signal.signal(s, signal.SIG_IGN)\n"
                 "time.sleep(60)\n")


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    import docker

    client = docker.from_env(timeout=30)
    yield client
    client.close()


def docker_policy(directory: Path, runtime: str) -> Path:
    # the properties each runtime enforces are proven elsewhere (runsc has no seccomp
    # filter of its own); runsc's own threads count against the pids limit
    return write_policy(directory, isolation={"backend": "docker", "runtime": runtime,
                                              "require": []},
                        limits={"pids": 256, "cell_timeout_s": 120})


def container_pids(container_id: str) -> set[int]:
    """Live processes in the container's cgroup (runc: its processes; runsc: the sandbox,
    its gofer and stubs)."""
    return in_cgroup_named(container_id)


def container_running(engine: Any, container_id: str) -> bool:
    import docker.errors

    try:
        return bool(engine.api.inspect_container(container_id)["State"]["Running"])
    except docker.errors.NotFound:
        return False


@pytest.mark.parametrize("backend", ["docker-runc", "docker-runsc"])
def test_killing_a_nodes_raylet_mid_cell_kills_its_containers_and_spares_other_nodes(
        backend: str, ray_cluster: Any, make_ray_runtime: Callable[..., Any], engine: Any,
        tmp_path: Path) -> None:
    require_backend(backend)
    runtime = backend.split("-", 1)[1]
    doomed_slot = f"rlmbox_slot_doomed_{runtime}"
    policy = docker_policy(tmp_path, runtime)
    doomed = ray_cluster.add_node(**node_args(os.environ["RLMBOX_TEST_RAY_DIR"],
                                              {doomed_slot: 1}))
    containers: list[str] = []
    try:
        survivor = make_ray_runtime(policy).session()
        running = make_ray_runtime(policy, slot_resource=doomed_slot).session()
        assert running.node_id == doomed.node_id != survivor.node_id
        assert running.exec("x = 1").status == "ok"
        found = engine.api.inspect_container(running.placement.sandbox_id)
        container, owner = found["Id"], found["Config"]["Labels"][LABEL_OWNER]
        containers += [container, survivor.placement.sandbox_id]
        pids = container_pids(container)
        assert pids, "the container's processes were not found"
        assert reaper_pids(owner), "the node actor started no sandbox reaper"
        outcome: list[BaseException] = []

        def cell() -> None:
            try:
                running.exec(STUBBORN_CELL)
            except BaseException as exc:
                outcome.append(exc)

        worker = threading.Thread(target=cell)
        worker.start()
        time.sleep(1.5)   # the cell is running in the container
        assert container_pids(container), "the container died before its node"
        killed_at = time.monotonic()
        doomed.kill_raylet()
        while (container_pids(container) or container_running(engine, container)) and \
                time.monotonic() - killed_at < REAP_WITHIN_S:
            time.sleep(0.1)
        left = container_pids(container)
        assert not left, f"processes of the container outlived their node: {left}"
        assert not container_running(engine, container)
        # the reaper does its job and goes
        while reaper_pids(owner) and time.monotonic() - killed_at < REAP_WITHIN_S + 10:
            time.sleep(0.1)
        assert not reaper_pids(owner), "the sandbox reaper outlived its job"
        worker.join(timeout=60)
        assert not worker.is_alive(), "exec did not return after its node died"
        assert len(outcome) == 1
        assert isinstance(outcome[0], SessionLost), outcome
        # another node actor's container was not touched
        assert survivor.exec("y = 2\nprint(y)").stdout == "2\n"
    finally:
        ray_cluster.remove_node(doomed, allow_graceful=False)
        for name in containers:   # a failed run leaves nothing behind either
            with contextlib.suppress(Exception):   # removed already, as it should be
                engine.api.remove_container(name, force=True, v=True)
