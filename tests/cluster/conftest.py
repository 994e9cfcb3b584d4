"""One simulated 3-node Ray cluster for the cluster tests, bound to 127.0.0.1.

Starting a cluster costs ~20 s on this machine, so the tests share one (session scope)
and each test that needs a node of its own adds one under a resource name of its own
(``RayRuntime(slot_resource=...)``). At teardown no Ray process may be left: every process
the cluster started carries its temp dir in its environment or command line.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# before Ray is imported: no usage reports, and the driver's "node address" stays the
# loopback one (otherwise Ray rewrites 127.0.0.1 to the host's address, where nothing
# listens, and ray.init hangs)
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

ray = pytest.importorskip("ray", reason="the ray extra is not installed")
from ray.cluster_utils import Cluster  # noqa: E402

from rlmbox.lm.scripted import ScriptedLM  # noqa: E402
from tests.conftest import write_policy  # noqa: E402

NODES = 3
SLOTS_PER_NODE = 2
LOOPBACK = "127.0.0.1"


def node_args(temp_dir: str, resources: dict[str, float]) -> dict[str, Any]:
    """A small node: no CPUs to schedule on (the node actor takes none), no dashboard."""
    return {"num_cpus": 0, "node_ip_address": LOOPBACK, "resources": resources,
            "include_dashboard": False, "object_store_memory": 80 * 1024 * 1024,
            "temp_dir": temp_dir}


def ray_processes(temp_dir: str) -> list[int]:
    """Pids of live processes started for this cluster (found by its temp dir)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                continue
            text = Path(f"/proc/{entry}/cmdline").read_bytes() + \
                Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if temp_dir.encode() in text:
            found.append(int(entry))
    return found


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Cluster]:
    temp_dir = tempfile.mkdtemp(prefix="rr", dir="/tmp")   # short: socket paths are capped
    os.environ["RLMBOX_TEST_RAY_DIR"] = temp_dir   # inherited by every Ray process
    # Ray writes the head's address to <RAY_TMPDIR>/ray/ray_current_cluster whatever the
    # nodes' temp_dir, and does not create that directory: on a fresh machine (no
    # /tmp/ray yet) the cluster failed to start unless an earlier test had made one
    earlier_tmpdir = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = temp_dir
    os.makedirs(os.path.join(temp_dir, "ray"), exist_ok=True)
    cluster = Cluster(initialize_head=True, head_node_args=node_args(
        temp_dir, {"rlmbox_slot": SLOTS_PER_NODE}))
    try:
        for _ in range(NODES - 1):
            cluster.add_node(**node_args(temp_dir, {"rlmbox_slot": SLOTS_PER_NODE}))
        ray.init(address=cluster.address, _node_ip_address=LOOPBACK, log_to_driver=False)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()  # type: ignore[no-untyped-call]  # Ray leaves it unannotated
        deadline = time.monotonic() + 20
        while ray_processes(temp_dir) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = ray_processes(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
        if earlier_tmpdir is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = earlier_tmpdir
        assert not left, f"Ray processes outlived the cluster: {left}"


@pytest.fixture
def cluster_policy(tmp_path: Path) -> Path:
    return write_policy(tmp_path, isolation={"backend": "process"})


@pytest.fixture
def make_ray_runtime(ray_cluster: Cluster, tmp_path: Path
                     ) -> Iterator[Callable[..., Any]]:
    """Builds RayRuntimes on the shared cluster (closed at teardown)."""
    from rlmbox.cluster import RayRuntime

    made: list[RayRuntime] = []

    def make(policy: Path | None = None, **kwargs: Any) -> RayRuntime:
        kwargs.setdefault("lm", functools.partial(ScriptedLM, default="scripted answer"))
        kwargs.setdefault("pool_size", 0)
        kwargs.setdefault("admission_timeout_s", 30.0)
        rt = RayRuntime(policy or write_policy(tmp_path, isolation={"backend": "process"}),
                        audit_dir=tmp_path / f"cluster-audit-{len(made)}", **kwargs)
        made.append(rt)
        return rt

    yield make
    for rt in made:
        rt.close()


@pytest.fixture(scope="module")
def collected(ray_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished cluster run's audit directory (index and node logs): one session per
    slot, a cell each, then closed."""
    from rlmbox.cluster import RayRuntime

    tmp = tmp_path_factory.mktemp("cluster-audit")
    with RayRuntime(write_policy(tmp, isolation={"backend": "process"}), pool_size=0,
                    audit_dir=tmp / "audit", admission_timeout_s=30) as rt:
        sessions = [rt.session() for _ in range(NODES * SLOTS_PER_NODE)]
        for i, session in enumerate(sessions):
            assert session.exec(f"print({i})").ok
        for session in sessions:
            session.close()
    return tmp / "audit"
