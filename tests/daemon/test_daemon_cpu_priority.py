"""``rlmbox serve`` runs before its sandboxes on the CPU (process backend, cgroups).

Why: under one tenant's attack the daemon's event loop, and its thread that forks a
sandbox while holding the GIL, waited in the kernel's run queue behind that tenant's
sandboxes, and every tenant's cells waited with them (docs/daemon.md, Limits 8). Read from
the kernel: the daemon's CPU group and its weight, and where the sandbox it starts runs.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from rlmbox.daemon.client import Client
from rlmbox.sandboxes.process.cgroups import HOST_WEIGHT_FACTOR, cgroup_version

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from bench_daemon_tenants import serve, token

# the kernel's default weight per cgroup version
WEIGHT_FILES = {1: ("cpu.shares", 1024), 2: ("cpu.weight", 100)}

pytestmark = pytest.mark.skipif(cgroup_version() == 0,
                                reason="no cgroups here (they need root)")


def cpu_group(pid: int) -> str:
    """Process ``pid``'s CPU group as the kernel reports it (v1: the cpu hierarchy)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if (cgroup_version() == 2 and controllers == "") or "cpu" in controllers.split(","):
            return path
    raise LookupError(f"process {pid} has no CPU group")


def children(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task")
    return [int(child) for task in tasks.iterdir()
            for child in (task / "children").read_text().split()]


def test_the_daemon_runs_at_ten_times_the_weight_of_the_sandboxes_it_starts() -> None:
    root = Path(tempfile.mkdtemp(prefix="rbx-priority-", dir="/tmp"))
    try:
        with serve(root) as daemon:
            group = cpu_group(daemon.pid)
            assert group == "/rlmbox-host", group
            base = (Path("/sys/fs/cgroup") if cgroup_version() == 2
                    else Path("/sys/fs/cgroup/cpu").resolve())
            name, default = WEIGHT_FILES[cgroup_version()]
            weight = int((base / group.lstrip("/") / name).read_text())
            assert weight == HOST_WEIGHT_FACTOR * default
            assert int((base / "rlmbox" / name).read_text()) == default
            with Client(socket=daemon.socket, token=token(root, "t"), timeout=60) as client:
                sid = client.create_session()["id"]
                try:
                    sandboxes = children(daemon.pid)
                    assert sandboxes   # bwrap, the sandbox's outermost process
                    for pid in sandboxes:
                        assert cpu_group(pid).startswith("/rlmbox/"), cpu_group(pid)
                finally:
                    client.close_session(sid)
    finally:
        shutil.rmtree(root, ignore_errors=True)
