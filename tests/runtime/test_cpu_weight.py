"""A sandbox that burns CPU yields it to sandboxes that run short cells (process backend).

Measured from the host: the weight the kernel holds in the sandbox's cgroup, while a cell
burns and after it ends. Why: under a tenant's CPU-bound flood, another tenant's trivial
cells waited in the run queue behind the burner (docs/daemon.md, Limits 8).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from rlmbox.runtime.runtime import Runtime
from rlmbox.sandboxes.process.cgroups import cgroup_version

BURN_S = 4.0
POLL_TIMEOUT_S = 3.0
# the kernel's default weight and the least it allows, per cgroup version
WEIGHTS = {1: ("cpu.shares", 1024, 2), 2: ("cpu.weight", 100, 1)}

pytestmark = pytest.mark.skipif(cgroup_version() == 0,
                                reason="no cgroups here (they need root)")


def cpu_weight(sandbox_id: str) -> int:
    """The weight the kernel holds for the sandbox's group, read from cgroupfs."""
    version = cgroup_version()
    name = WEIGHTS[version][0]
    base = Path("/sys/fs/cgroup") if version == 2 else Path("/sys/fs/cgroup/cpu").resolve()
    return int((base / "rlmbox" / sandbox_id / name).read_text())


def weight_becomes(sandbox_id: str, expected: int) -> bool:
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while time.monotonic() < deadline:
        if cpu_weight(sandbox_id) == expected:
            return True
        time.sleep(0.02)
    return False


def test_a_cpu_bound_cell_runs_at_the_least_weight_and_gets_it_back_after(
        runtime: Runtime) -> None:
    _, normal, least = WEIGHTS[cgroup_version()]
    with runtime.session() as session:
        sandbox_id = session.sandbox.info.sandbox_id
        session.exec("x = 1")
        # short cells keep the default weight (the start-up's own burst may have lowered
        # it for one watch interval: on a loaded host that interval can end after x = 1)
        assert weight_becomes(sandbox_id, normal), cpu_weight(sandbox_id)
        burner = threading.Thread(target=session.exec, args=(
            f"import time\nt0 = time.monotonic()\nwhile time.monotonic() - t0 < {BURN_S}:"
            "\n    pass",))
        burner.start()
        try:
            assert weight_becomes(sandbox_id, least), cpu_weight(sandbox_id)
        finally:
            burner.join()
        assert weight_becomes(sandbox_id, normal), cpu_weight(sandbox_id)
