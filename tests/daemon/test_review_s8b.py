"""Review s8b, from the daemon's API: two tenants open and closes sessions as fast as it
can while another tenant's cell forks children that burn past ``cpu_seconds``. The shared
CPU poller (``sandboxes/cpu_poller.py``) must still kill the burner, naming the limit, and
keep no watch of a closed session (docs/security.md rows 23a, 23c). Held when written."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cell_programs import fork_burn

from rlmbox.policies.model import load_policy
from rlmbox.sandboxes.cpu_poller import shared_poller
from rlmbox.sandboxes.process.backend import CPU_WATCH_INTERVAL_S
from rlmbox.sandboxes.process.cgroups import cgroup_version

from .conftest import TEST_LIMITS, RunningDaemon, policy_file

FORK_BURN = fork_burn(0.7)   # 2.1 s of CPU in all under cpu_seconds 1

pytestmark = pytest.mark.skipif(cgroup_version() == 0,
                                reason="no cgroups here (they need root)")


def test_a_tenants_session_churn_neither_saves_a_burner_nor_leaves_watches(
        start_daemon: Callable[..., RunningDaemon], tmp_path: Path) -> None:
    poller = shared_poller(CPU_WATCH_INTERVAL_S)
    before = set(poller._watches)
    limits = {**TEST_LIMITS, "cpu_seconds": 1, "cpu_cores": 2.0, "cell_timeout_s": 60}
    daemon = start_daemon(policies={"test": load_policy(policy_file(tmp_path, limits=limits))})
    stop = threading.Event()
    churned = [0]
    errors: list[BaseException] = []

    def churn(tenant: str) -> None:
        try:
            with daemon.client(tenant) as client:
                while not stop.is_set():
                    sid = client.create_session()["id"]
                    client.exec(sid, "y = 2")
                    client.close_session(sid)
                    churned[0] += 1
        except BaseException as exc:   # reported below, not lost on a thread
            errors.append(exc)

    with daemon.client("alice") as client:
        sid = client.create_session()["id"]
        assert client.exec(sid, "x = 1").ok
        threads = [threading.Thread(target=churn, args=(tenant,))
                   for tenant in ("mallory", "trudy")]   # one cell at a time each
        for thread in threads:
            thread.start()
        try:
            result = client.exec(sid, FORK_BURN)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        assert not errors, errors
        assert result.status == "killed", result.stdout[-80:]
        assert "cpu_seconds" in (result.error or ""), result.error
        assert "done" not in result.stdout
        assert churned[0] > 0
        client.close_session(sid)
    deadline = time.monotonic() + 2
    while not set(poller._watches) <= before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert set(poller._watches) <= before, "a closed session's sandbox is still watched"
