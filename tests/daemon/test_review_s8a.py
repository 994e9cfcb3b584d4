"""Review s8a: the store's reads now go through a connection of their own (WAL). These
attacks held; they pin the promises that had no test: ``rlmbox token`` run as another
process beside a running daemon is seen from the very next request, and a burst of reads
beside another process's writes never serves a stale row, another tenant's row or a 5xx.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from rlmbox.daemon.store import SessionRow, Store

from .conftest import RunningDaemon
from .daemon_process import REPO, rlmbox_cli


def _get(daemon: RunningDaemon, token: str) -> httpx.Response:
    transport = httpx.HTTPTransport(uds=str(daemon.socket))
    with httpx.Client(transport=transport, base_url="http://rlmbox") as http:
        return http.get("/v1/sessions", headers={"Authorization": f"Bearer {token}"})


def test_a_token_created_and_revoked_by_the_cli_beside_the_daemon_counts_at_once(
        daemon: RunningDaemon) -> None:
    state = str(daemon.config.state_dir)
    for _ in range(3):
        created = rlmbox_cli("token", "create", "--tenant", "alice", "--state", state)
        assert created.returncode == 0, created.stderr
        token = created.stdout.strip()
        assert _get(daemon, token).status_code == 200   # the first request after create
        revoked = rlmbox_cli("token", "revoke", token.split(".")[1], "--state", state)
        assert revoked.returncode == 0, revoked.stderr
        assert _get(daemon, token).status_code == 401   # the first request after revoke


_WRITER = """
import sys
import time
from pathlib import Path
from rlmbox.daemon.store import SessionRow, Store
store = Store(Path(sys.argv[1]))
for line in sys.stdin:
    verb, session_id = line.split()
    if verb == "add":
        store.add_session(SessionRow(session_id, "bob", "p", "0" * 64, "process", None, [],
                                     "open", time.time(), None, None))
    else:
        store.end_session(session_id, "closed", "review")
    print("done", flush=True)
store.close()
"""


def test_rows_another_process_commits_are_read_at_once_and_only_by_their_tenant(
        daemon: RunningDaemon) -> None:
    """Sessions written by another process (``bob``) are seen by the daemon's reader from
    the next lookup, open then closed, and never by ``alice``; every request answers."""
    alice = daemon.token("alice")
    daemon.token("bob")   # the tenant row the writer's sessions refer to
    store: Store = daemon.daemon._store
    with subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(daemon.config.state_dir)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)}) as writer:
        assert writer.stdin is not None
        assert writer.stdout is not None
        for i in range(30):
            session_id = f"s8a-{i}"
            for verb, state in (("add", "open"), ("end", "closed")):
                writer.stdin.write(f"{verb} {session_id}\n")
                writer.stdin.flush()
                assert writer.stdout.readline().strip() == "done"
                row = store.session(session_id, "bob")
                assert isinstance(row, SessionRow)
                assert row.state == state
                assert store.session(session_id, "alice") is None
                response = _get(daemon, alice)
                assert response.status_code == 200
                assert response.json()["sessions"] == []
        writer.stdin.close()
        assert writer.wait(30) == 0


def test_a_store_opened_and_closed_leaves_no_descriptor(tmp_path: Path) -> None:
    Store(tmp_path).close()
    before = sorted(os.listdir("/proc/self/fd"))
    for _ in range(10):
        store = Store(tmp_path)
        store.create_token("alice")
        store.tokens()
        store.close()
    assert sorted(os.listdir("/proc/self/fd")) == before
