"""Reconciliation kills what a dead daemon left running, and only that."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rlmbox.audit.log import AuditLog
from rlmbox.audit.reader import iter_records
from rlmbox.daemon.reconcile import reconcile
from rlmbox.daemon.store import SessionRow, Store
from rlmbox.daemon.survivors import start_time
from rlmbox.sandboxes.process.cgroups import Cgroup, CgroupLimits, cgroup_version

DEADLINE_S = 60.0


def _row(session_id: str, pids: list[tuple[int, str]], sandbox_id: str | None) -> SessionRow:
    return SessionRow(id=session_id, tenant="alice", policy="test", policy_sha256="0" * 64,
                      backend="process", sandbox_id=sandbox_id, sandbox_pids=pids,
                      state="open", created=time.time(), closed=None, reason=None)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path)
    store.create_token("alice")
    yield store
    store.close()


@pytest.fixture
def sleepers() -> Iterator[list[subprocess.Popen[bytes]]]:
    made: list[subprocess.Popen[bytes]] = []
    yield made
    for proc in made:
        proc.kill()
        proc.wait()


def _sleeper(made: list[subprocess.Popen[bytes]],
             preexec_fn: Callable[[], None] | None = None) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(["sleep", "600"], start_new_session=True,
                            preexec_fn=preexec_fn)  # noqa: PLW1509 - joins a cgroup only
    made.append(proc)
    return proc


def _wait_dead(proc: subprocess.Popen[bytes]) -> int:
    return proc.wait(DEADLINE_S)


def test_a_survivor_is_killed_and_a_reused_pid_is_spared(
        store: Store, tmp_path: Path, sleepers: list[subprocess.Popen[bytes]]) -> None:
    survivor = _sleeper(sleepers)
    innocent = _sleeper(sleepers)
    survivor_start = start_time(survivor.pid)
    assert survivor_start is not None
    store.add_session(_row("s-survivor", [(survivor.pid, survivor_start)], None))
    # the innocent process holds a recorded pid, but it started at another time: pid reuse
    store.add_session(_row("s-reused", [(innocent.pid, "1")], None))
    with AuditLog(tmp_path / "audit") as audit:
        result = reconcile(store, audit)
    assert _wait_dead(survivor) == -9
    assert innocent.poll() is None
    assert sorted(result.lost) == ["s-reused", "s-survivor"]
    assert result.killed_processes == 1
    for session_id in ("s-survivor", "s-reused"):
        row = store.session(session_id, "alice")
        assert row is not None
        assert row.state == "lost"
    lost = {e["session"]: e for e in iter_records(tmp_path / "audit")
            if e["event"] == "session.lost"}
    assert lost["s-survivor"]["survivors_killed"] == 1
    assert lost["s-reused"]["survivors_killed"] == 0
    assert {e["tenant"] for e in lost.values()} == {"alice"}
    assert store.open_sessions() == []


def test_a_second_reconcile_finds_nothing(store: Store, tmp_path: Path) -> None:
    store.add_session(_row("s-gone", [(2**22 + 1, "123")], None))
    with AuditLog(tmp_path / "audit") as audit:
        assert reconcile(store, audit).lost == ["s-gone"]
        assert reconcile(store, audit).lost == []


@pytest.mark.skipif(not cgroup_version(), reason="needs root and usable cgroups")
def test_whatever_is_left_in_the_sandbox_cgroup_is_killed_and_the_cgroup_removed(
        store: Store, tmp_path: Path, sleepers: list[subprocess.Popen[bytes]]) -> None:
    name = f"p-reconcile{os.getpid()}"
    group = Cgroup(name, CgroupLimits(64 << 20, 16, 0.5), cgroup_version())
    files = group.procs_files()

    def join() -> None:
        for procs in files:
            with open(procs, "w") as handle:
                handle.write("0")

    escapee = _sleeper(sleepers, preexec_fn=join)   # not recorded by pid: only the cgroup
    assert escapee.pid in group.pids()
    store.add_session(_row("s-cgroup", [], name))
    with AuditLog(tmp_path / "audit") as audit:
        result = reconcile(store, audit)
    assert _wait_dead(escapee) == -9
    assert result.killed_processes >= 1
    assert not any(Path(p).parent.exists() for p in files)
