"""The daemon as a real process: SIGTERM shuts down cleanly; kill -9 leaves no sandbox
behind, and the next start marks the old sessions lost (API and audit log)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlmbox.audit.reader import iter_records
from rlmbox.audit.verify import verify_log
from rlmbox.daemon.client import Client
from rlmbox.daemon.store import SessionRow, Store
from rlmbox.daemon.survivors import is_running
from rlmbox.errors import SessionClosed
from rlmbox.sandboxes.process.cgroups import cgroup_version

from .conftest import policy_file, short_dir, stored_session
from .daemon_process import DEADLINE_S, DaemonProcess, rlmbox_cli

pytestmark = pytest.mark.slow


@pytest.fixture
def places(tmp_path: Path) -> Iterator[dict[str, Path]]:
    sock = short_dir()
    yield {"state": tmp_path / "state", "socket": sock / "rlmbox.sock",
           "policy": policy_file(tmp_path), "log": tmp_path / "daemon.log"}
    for leftover in sock.iterdir():
        leftover.unlink()
    sock.rmdir()


def _start(places: dict[str, Path]) -> DaemonProcess:
    return DaemonProcess(places["state"], places["socket"], places["policy"], places["log"])


def _token(places: dict[str, Path], tenant: str) -> str:
    result = rlmbox_cli("token", "create", "--tenant", tenant, "--state", str(places["state"]))
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _alive(pids: list[tuple[int, str]]) -> list[int]:
    return [pid for pid, started in pids if is_running(pid, started)]


def _recorded(state: Path, tenant: str, session_id: str) -> SessionRow:
    return stored_session(state, tenant, session_id)


def _recorded_pids(state: Path, tenant: str, session_id: str) -> list[tuple[int, str]]:
    return _recorded(state, tenant, session_id).sandbox_pids


def _cgroup_dirs(sandbox_id: str | None) -> list[Path]:
    root = Path("/sys/fs/cgroup")
    assert sandbox_id
    return [d for d in (root / "rlmbox" / sandbox_id, root / "memory" / "rlmbox" / sandbox_id,
                        root / "pids" / "rlmbox" / sandbox_id) if d.exists()]


def test_token_cli_creates_lists_and_revokes(places: dict[str, Path]) -> None:
    token = _token(places, "alice")
    token_id = token.split(".")[1]
    listing = rlmbox_cli("token", "list", "--state", str(places["state"]))
    assert token_id in listing.stdout
    assert "alice" in listing.stdout
    assert token.split(".")[2] not in listing.stdout   # the secret is shown once only
    revoked = rlmbox_cli("token", "revoke", token_id, "--state", str(places["state"]))
    assert revoked.returncode == 0
    again = rlmbox_cli("token", "revoke", token_id, "--state", str(places["state"]))
    assert again.returncode == 1


def test_sigterm_closes_sessions_kills_sandboxes_and_exits_0(
        places: dict[str, Path]) -> None:
    token = _token(places, "alice")
    daemon = _start(places)
    try:
        with Client(socket=places["socket"], token=token) as client:
            info = client.create_session()
            assert client.exec(info["id"], "x = 1").ok
        pids = _recorded_pids(places["state"], "alice", info["id"])
        assert _alive(pids)
        assert daemon.terminate() == 0
    finally:
        daemon.cleanup()
    assert _alive(pids) == []
    assert not places["socket"].exists()
    log = places["log"].read_text()
    assert f"listening on unix:{places['socket']}" in log
    assert "rlmbox: stopped" in log
    store = Store(places["state"])
    try:
        row = store.session(info["id"], "alice")
    finally:
        store.close()
    assert row is not None
    assert row.state == "closed"
    ends = [e for e in iter_records(places["state"] / "audit")
            if e["event"] == "session.end" and e["session"] == info["id"]]
    assert [e["reason"] for e in ends] == ["daemon shutdown"]
    assert verify_log(places["state"] / "audit").ok


def test_kill_9_leaves_no_sandbox_and_restart_marks_sessions_lost(
        places: dict[str, Path]) -> None:
    token = _token(places, "alice")
    daemon = _start(places)
    try:
        with Client(socket=places["socket"], token=token) as client:
            old = [client.create_session(context="ctx") for _ in range(2)]
            for info in old:
                assert client.exec(info["id"], "kept = 1").ok
        pids = [p for info in old for p in _recorded_pids(places["state"], "alice",
                                                             info["id"])]
        assert len(_alive(pids)) >= 2
        sandbox_ids = [_recorded(places["state"], "alice", i["id"]).sandbox_id for i in old]
        had_cgroups = bool(cgroup_version())
        if had_cgroups:
            assert all(_cgroup_dirs(sid) for sid in sandbox_ids)
        daemon.kill9()
    finally:
        daemon.cleanup()
    # bubblewrap's --die-with-parent takes the sandboxes down with the daemon; the next
    # start kills any survivor, so give the kernel time, then check again after restart
    deadline = time.monotonic() + DEADLINE_S
    while _alive(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    restarted = _start(places)
    try:
        assert _alive(pids) == []
        # the dead daemon's sandbox cgroups are gone too (removed by reconciliation)
        assert [d for sid in sandbox_ids for d in _cgroup_dirs(sid)] == []
        assert had_cgroups or not cgroup_version()
        with Client(socket=places["socket"], token=token) as client:
            for info in old:
                record = client.session(info["id"])
                assert record["state"] == "lost"
                assert "stopped without closing" in record["reason"]
                with pytest.raises(SessionClosed):
                    client.exec(info["id"], "print(kept)")
            events, _ = client.audit(limit=1000)
            lost = {e["session"] for e in events if e["event"] == "session.lost"}
            assert lost == {info["id"] for info in old}
            fresh = client.create_session()
            assert client.exec(fresh["id"], "print('after restart')").stdout == (
                "after restart\n")
            client.close_session(fresh["id"])
        assert restarted.terminate() == 0
    finally:
        restarted.cleanup()
    assert verify_log(places["state"] / "audit").ok
