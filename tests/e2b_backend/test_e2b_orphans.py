"""Orphans: E2B sandboxes whose owner process is gone are found by their metadata and
killed by ``rlmbox gc --backend e2b`` and by the daemon's reconciliation; sandboxes of
live owners and of other hosts are left alone."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2b_code_interpreter import Sandbox
from e2b_double import E2BDouble

from rlmbox.audit.log import AuditLog
from rlmbox.audit.reader import iter_records
from rlmbox.daemon.reconcile import reconcile
from rlmbox.daemon.store import SessionRow, Store
from rlmbox.sandboxes.owner import Owner, host_id


def _dead_owner() -> Owner:
    """A process of this host and boot that has exited (its pid is not reused: start time
    differs from any live process's)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return Owner(host=host_id(), pid=proc.pid, start="1")


def _vm(double: E2BDouble, owner: Owner, name: str) -> str:
    sandbox = Sandbox.create(template="rlmbox", metadata=owner.labels(name), timeout=60,
                             api_key=double.api_key, api_url=double.url,
                             sandbox_url=double.url)
    return str(sandbox.sandbox_id)


@pytest.fixture
def vms(double: E2BDouble) -> Iterator[dict[str, str]]:
    """Three tagged sandboxes: a dead owner's, ours (alive), another host's."""
    found = {"orphan": _vm(double, _dead_owner(), "rlmbox-orphan"),
             "ours": _vm(double, Owner.current(), "rlmbox-ours"),
             "foreign": _vm(double, Owner("elsewhere/boot", 1, "1"), "rlmbox-foreign")}
    yield found
    for sandbox_id in found.values():
        double.kill(sandbox_id)


def test_gc_kills_only_the_orphan(double: E2BDouble, vms: dict[str, str]) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = subprocess.run([sys.executable, "-m", "rlmbox.cli.main", "gc", "--backend", "e2b"],
                         capture_output=True, text=True, env=env, check=True, timeout=60)
    assert f"killed {vms['orphan']}" in out.stdout
    assert vms["orphan"] not in double.sandboxes
    assert vms["ours"] in double.sandboxes
    assert vms["foreign"] in double.sandboxes


def test_reconciliation_kills_the_orphans_of_lost_e2b_sessions(
        double: E2BDouble, vms: dict[str, str], tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.create_token("alice")   # the tenant the session row names
    try:
        store.add_session(SessionRow(
            id="s-lost", tenant="alice", policy="e2b", policy_sha256="0" * 64, backend="e2b",
            sandbox_id=vms["orphan"], sandbox_pids=[], state="open", created=time.time(),
            closed=None, reason=None))
        with AuditLog(tmp_path / "audit") as audit:
            result = reconcile(store, audit)
    finally:
        store.close()
    assert result.lost == ["s-lost"]
    assert result.killed_e2b == [vms["orphan"]]
    assert vms["ours"] in double.sandboxes
    reconciled = [r for r in iter_records(tmp_path / "audit") if r["event"] == "daemon.reconciled"]
    assert reconciled[0]["e2b_sandboxes_killed"] == [vms["orphan"]]
