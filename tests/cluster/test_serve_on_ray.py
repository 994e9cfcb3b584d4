"""``rlmbox serve --ray ADDRESS``: a real daemon process whose sessions run on the shared
3-node cluster, used by two tenants; tenants, tokens, caps and refusals as without it;
what the cluster cannot do is refused by name; the daemon's and the nodes' audit logs
verify; a killed daemon leaves no sandbox, and its successor marks the sessions lost."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from rlmbox.audit.reader import iter_records
from rlmbox.daemon.client import Client
from rlmbox.daemon.store import SessionRow
from rlmbox.errors import DaemonError, NotOnCluster, SessionLost
from tests.cluster.conftest import NODES, SLOTS_PER_NODE, node_args
from tests.cluster.test_node_loss import sandbox_pids
from tests.conftest import write_policy
from tests.daemon.conftest import stored_session
from tests.daemon.daemon_process import DaemonProcess, rlmbox_cli

SESSIONS_PER_TENANT = 3
DOOMED = "rlmbox_slot_serve_doomed"
AUDIT_QUOTA = 30_000
GONE_WITHIN_S = 30.0


class ServeOnRay:
    """One ``rlmbox serve --ray`` process with its state, and tokens of two tenants."""

    def __init__(self, root: Path, address: str, policy: Path, *extra: str) -> None:
        self.state = root / "state"
        self.socket = root / "d.sock"
        self.log = root / "daemon.log"
        self.args = ("--ray", address, *extra)
        self.policy = policy
        self.tokens = {tenant: self._token(tenant) for tenant in ("alice", "bob")}
        self.process = self.start()

    def start(self) -> DaemonProcess:
        return DaemonProcess(self.state, self.socket, self.policy, self.log, self.args)

    def _token(self, tenant: str) -> str:
        done = rlmbox_cli("token", "create", "--tenant", tenant, "--state", str(self.state))
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def client(self, tenant: str) -> Client:
        return Client(socket=self.socket, token=self.tokens[tenant])

    def row(self, tenant: str, session_id: str) -> SessionRow:
        return stored_session(self.state, tenant, session_id)


@contextlib.contextmanager
def serving_rlm_children(root: Path, address: str, child_cell: str, *, cells_per_tenant: int,
                         cell_timeout_s: float = 60, max_depth: int = 1
                         ) -> Iterator[ServeOnRay]:
    """``rlmbox serve --ray`` whose policy permits ``rlm_query`` (and its batch), with a
    scripted LM answering every child with ``child_cell``, under a tenant cell cap."""
    script = root / "lm.json"
    script.write_text(json.dumps({"default": child_cell}))
    policy = write_policy(
        root, isolation={"backend": "process"}, limits={"cell_timeout_s": cell_timeout_s},
        rules=[{"id": f"permit-{fn}", "effect": "permit", "function": fn}
               for fn in ("rlm_query", "rlm_query_batched")],
        budgets={"tree": {"calls": 50, "max_depth": max_depth, "max_concurrent": 8}})
    short = Path(tempfile.mkdtemp(prefix="rbx-rq-", dir="/tmp"))   # socket paths are short
    daemon = ServeOnRay(short, address, policy, "--max-cells-per-tenant",
                        str(cells_per_tenant), "--lm", f"scripted:{script}")
    try:
        yield daemon
    finally:
        assert daemon.process.terminate() == 0
        shutil.rmtree(short, ignore_errors=True)


@pytest.fixture(scope="module")
def serve(ray_cluster: Any, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[ServeOnRay]:
    root = tmp_path_factory.mktemp("serve-ray")
    short = Path(tempfile.mkdtemp(prefix="rbx-ray-", dir="/tmp"))   # socket paths are short
    policy = write_policy(root, isolation={"backend": "process"})
    daemon = ServeOnRay(short, ray_cluster.address, policy, "--max-sessions-per-tenant",
                        str(SESSIONS_PER_TENANT), "--max-cells-per-tenant", "1")
    try:
        yield daemon
    finally:
        daemon.process.cleanup()
        shutil.rmtree(short, ignore_errors=True)


def _refusals(client: Client, error: str) -> list[dict[str, Any]]:
    """The tenant's ``request.refused`` events of that error type, once indexed."""
    deadline = time.monotonic() + 15
    while True:
        events, _ = client.audit(limit=1000)
        found = [e for e in events
                 if e["event"] == "request.refused" and e.get("error") == error]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.3)


def test_two_tenants_sessions_spread_over_the_nodes_and_run_there(serve: ServeOnRay) -> None:
    assert SESSIONS_PER_TENANT * 2 == NODES * SLOTS_PER_NODE   # every slot taken below
    with serve.client("alice") as alice, serve.client("bob") as bob:
        opened = [(tenant, client, client.create_session()["id"])
                  for tenant, client in (("alice", alice), ("bob", bob))
                  for _ in range(SESSIONS_PER_TENANT)]
        try:
            nodes = {serve.row(tenant, sid).node for tenant, _, sid in opened}
            assert len(nodes) == NODES
            assert None not in nodes
            for i, (_, client, sid) in enumerate(opened):
                assert client.exec(sid, f"x = {i}\nprint(x * 2)").stdout == f"{i * 2}\n"
            assert all(serve.row(t, sid).sandbox_pids == [] for t, _, sid in opened)
        finally:
            for _, client, sid in opened:
                client.close_session(sid)
        assert {serve.row(t, sid).state for t, _, sid in opened} == {"closed"}


def test_another_tenant_cannot_touch_a_session_on_the_cluster(serve: ServeOnRay) -> None:
    with serve.client("alice") as alice, serve.client("bob") as bob:
        sid = alice.create_session()["id"]
        try:
            alice.exec(sid, "secret = 'alice only'")
            for attempt in (lambda: bob.exec(sid, "print(secret)"),
                            lambda: bob.session(sid), lambda: bob.close_session(sid),
                            lambda: bob.interrupt(sid)):
                with pytest.raises(DaemonError) as hidden:
                    attempt()
                assert hidden.value.status == 404
            assert alice.exec(sid, "print(secret)").stdout == "alice only\n"
        finally:
            alice.close_session(sid)


def test_the_tenants_session_cap_holds_and_the_refusal_is_audited(serve: ServeOnRay) -> None:
    with serve.client("alice") as alice, serve.client("bob") as bob:
        mine = [alice.create_session()["id"] for _ in range(SESSIONS_PER_TENANT)]
        try:
            with pytest.raises(DaemonError) as capped:
                alice.create_session()
            assert capped.value.status == 429
            assert capped.value.type == "TooManySessions"
            theirs = bob.create_session()["id"]   # the cap is alice's, not bob's
            bob.close_session(theirs)
        finally:
            for sid in mine:
                alice.close_session(sid)
        assert _refusals(alice, "TooManySessions")
        late = alice.create_session()["id"]   # closing gave the slots back
        alice.close_session(late)


def test_the_tenants_cell_cap_holds_while_another_tenant_runs(serve: ServeOnRay) -> None:
    with serve.client("alice") as alice, serve.client("bob") as bob:
        first, second = alice.create_session()["id"], alice.create_session()["id"]
        theirs = bob.create_session()["id"]
        try:
            with ThreadPoolExecutor(1) as pool:
                slow = pool.submit(alice.exec, first, "import time\ntime.sleep(4)\nprint('done')")
                time.sleep(1.5)   # the slow cell holds alice's one cell slot on its node
                with pytest.raises(DaemonError) as capped:
                    alice.exec(second, "print('second')")
                assert capped.value.status == 429
                assert capped.value.type == "TooManyCells"
                assert bob.exec(theirs, "print('bob runs')").stdout == "bob runs\n"
                assert slow.result(timeout=60).stdout == "done\n"
            assert alice.exec(second, "print('second')").stdout == "second\n"
        finally:
            for client, sid in ((alice, first), (alice, second), (bob, theirs)):
                client.close_session(sid)
        assert _refusals(alice, "TooManyCells")


def test_output_streams_and_files_move_through_the_node(serve: ServeOnRay) -> None:
    with serve.client("alice") as alice:
        sid = alice.create_session()["id"]
        try:
            pieces: list[tuple[str, str]] = []
            result = alice.exec_stream(
                sid, "import sys, time\nprint('one', flush=True)\ntime.sleep(0.5)\n"
                     "print('two')\nprint('err', file=sys.stderr)",
                on_output=lambda stream, text: pieces.append((stream, text)))
            assert result.stdout == "one\ntwo\n"
            assert "".join(t for s, t in pieces if s == "stdout") == result.stdout
            assert "".join(t for s, t in pieces if s == "stderr") == "err\n"
            alice.write_file(sid, "/tmp/data.txt", b"from the client")
            assert alice.exec(sid, "print(open('/tmp/data.txt').read())").stdout == \
                "from the client\n"
            alice.exec(sid, "open('/tmp/out.txt', 'w').write('from the cell')")
            assert alice.read_file(sid, "/tmp/out.txt") == b"from the cell"
            assert {e["name"] for e in alice.list_files(sid, "/tmp")} >= {"data.txt", "out.txt"}
        finally:
            alice.close_session(sid)


def test_what_the_cluster_cannot_stream_is_refused_by_name_not_run_elsewhere(
        serve: ServeOnRay) -> None:
    with serve.client("alice") as alice:
        sid = alice.create_session()["id"]
        try:
            time.sleep(1.1)   # refusals are recorded at most once a second per tenant
            with pytest.raises(NotOnCluster, match="root-model text"):
                alice.exec_stream(sid, "ran = True", on_output=lambda *_: None,
                                  on_root_text=lambda *_: None)
            # nothing ran, here or on the node: the session is as it was
            assert alice.exec(sid, "print('ran' in globals())").stdout == "False\n"
        finally:
            alice.close_session(sid)
        refused = _refusals(alice, "NotOnCluster")
        assert refused
        assert all(e["status"] == 501 for e in refused)


def test_the_viewer_report_of_a_cluster_session_is_refused_by_name_not_rendered_empty(
        serve: ServeOnRay) -> None:
    """GET /v1/sessions/{id}/view renders from the daemon's own log, which holds none of a
    cluster session's events (they are in its node's log): it answers 501 NotOnCluster,
    never a report that shows an empty session."""
    with serve.client("alice") as alice:
        sid = alice.create_session()["id"]
        try:
            alice.exec(sid, "print('ran')")
            transport = httpx.HTTPTransport(uds=str(serve.socket))
            with httpx.Client(transport=transport, base_url="http://rlmbox") as http:
                answer = http.get(f"/v1/sessions/{sid}/view",
                                  headers={"Authorization": f"Bearer {serve.tokens['alice']}"})
        finally:
            alice.close_session(sid)
    assert answer.status_code == 501, answer.text[:300]
    assert answer.json()["error"]["type"] == "NotOnCluster"
    assert "rlmbox audit view" in answer.json()["error"]["message"]


def test_after_a_clean_stop_the_daemon_log_and_every_node_log_verify(
        serve: ServeOnRay) -> None:
    """Runs last in this module: it stops the module's daemon, with a session open."""
    with serve.client("bob") as bob:
        left_open = bob.create_session()["id"]
        assert bob.exec(left_open, "x = 1").ok
    sandbox_id = serve.row("bob", left_open).sandbox_id
    assert sandbox_id
    assert sandbox_pids(sandbox_id)
    assert serve.process.terminate() == 0
    assert serve.row("bob", left_open).state == "closed"
    assert not sandbox_pids(sandbox_id)
    daemon_log = serve.state / "audit"
    done = rlmbox_cli("audit", "verify", str(daemon_log))
    assert done.returncode == 0, done.stdout + done.stderr
    sets = {r["audit_set"]: r["tenant"] for r in iter_records(daemon_log)
            if r["event"] == "daemon.cluster_audit"}
    assert set(sets.values()) == {"alice", "bob"}
    node_logs = 0
    for audit_set, tenant in sets.items():
        done = rlmbox_cli("audit", "verify", "--cluster", audit_set)
        assert done.returncode == 0, done.stdout + done.stderr
        nodes = list((Path(audit_set) / "nodes").iterdir())
        node_logs += len(nodes)
        starts = [r for node in nodes for r in iter_records(node)
                  if r["event"] == "session.create"]
        assert starts
        assert {r["tenant"] for r in starts} == {tenant}
    assert node_logs >= NODES


def _run_until_refused(client: Client, sid: str) -> tuple[int, DaemonError] | None:
    """Runs cells of ~4 KB of output until one is refused: how many ran, and why."""
    for cells in range(60):
        try:
            client.exec(sid, "print('x' * 4000)")
        except DaemonError as exc:
            return cells, exc
        time.sleep(0.4)   # the node logs are measured every second
    return None


def test_the_audit_quota_counts_what_a_tenant_wrote_to_the_node_logs(
        ray_cluster: Any, tmp_path: Path) -> None:
    short = Path(tempfile.mkdtemp(prefix="rbx-ray-", dir="/tmp"))
    try:
        daemon = ServeOnRay(short, ray_cluster.address,
                            write_policy(tmp_path, isolation={"backend": "process"}),
                            "--audit-bytes-per-tenant", str(AUDIT_QUOTA))
        try:
            with daemon.client("alice") as alice, daemon.client("bob") as bob:
                sid = alice.create_session()["id"]
                refusal = _run_until_refused(alice, sid)
                assert refusal is not None, "the quota never refused a cell"
                cells, over = refusal
                assert over.status == 403
                assert over.type == "AuditQuotaExceeded"
                assert cells * 4000 < 4 * AUDIT_QUOTA   # refused soon after the quota
                theirs = bob.create_session()["id"]   # bob's quota is his own
                assert bob.exec(theirs, "print('bob runs')").stdout == "bob runs\n"
                assert _refusals(alice, "AuditQuotaExceeded")
        finally:
            daemon.process.cleanup()
    finally:
        shutil.rmtree(short, ignore_errors=True)


def test_a_node_that_dies_under_a_daemon_session_ends_it_lost(
        ray_cluster: Any, tmp_path: Path) -> None:
    doomed = ray_cluster.add_node(**node_args(os.environ["RLMBOX_TEST_RAY_DIR"], {DOOMED: 1}))
    short = Path(tempfile.mkdtemp(prefix="rbx-ray-", dir="/tmp"))
    try:
        daemon = ServeOnRay(short, ray_cluster.address,
                            write_policy(tmp_path, isolation={"backend": "process"}),
                            "--ray-slot-resource", DOOMED)
        try:
            with daemon.client("alice") as alice:
                sid = alice.create_session()["id"]
                assert alice.exec(sid, "x = 1").ok
                assert daemon.row("alice", sid).node == doomed.node_id
                with ThreadPoolExecutor(1) as pool:
                    cell = pool.submit(alice.exec, sid, "import time\ntime.sleep(30)")
                    time.sleep(1.5)   # the cell runs on the node
                    killed_at = time.monotonic()
                    doomed.kill_raylet()
                    with pytest.raises(SessionLost):
                        cell.result(timeout=60)
                assert time.monotonic() - killed_at < GONE_WITHIN_S
                record = alice.session(sid)
                assert record["state"] == "lost"
                assert doomed.node_id[:12] in record["reason"]
                with pytest.raises(SessionLost):   # and stays so
                    alice.exec(sid, "print(x)")
        finally:
            daemon.process.cleanup()
    finally:
        ray_cluster.remove_node(doomed, allow_graceful=False)
        shutil.rmtree(short, ignore_errors=True)


def test_a_killed_daemon_leaves_no_sandbox_and_its_successor_marks_the_sessions_lost(
        ray_cluster: Any, tmp_path: Path) -> None:
    short = Path(tempfile.mkdtemp(prefix="rbx-ray-", dir="/tmp"))
    try:
        daemon = ServeOnRay(short, ray_cluster.address,
                            write_policy(tmp_path, isolation={"backend": "process"}))
        try:
            with daemon.client("alice") as alice:
                sid = alice.create_session()["id"]
                alice.exec(sid, "x = 1")
            row = daemon.row("alice", sid)
            assert row.sandbox_id
            assert row.node
            pids = sandbox_pids(row.sandbox_id)
            assert pids, "the session's sandbox was not found"
            daemon.process.kill9()
            deadline = time.monotonic() + GONE_WITHIN_S
            while (left := sandbox_pids(row.sandbox_id)) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert not left, f"sandbox processes outlived their daemon: {left}"

            daemon.process = daemon.start()
            with daemon.client("alice") as alice:
                assert alice.session(sid)["state"] == "lost"
            lost = [r for r in iter_records(daemon.state / "audit")
                    if r["event"] == "session.lost"]
            assert [(r["session"], r["node"], r["survivors_killed"]) for r in lost] == \
                [(sid, row.node, 0)]
        finally:
            daemon.process.cleanup()
    finally:
        shutil.rmtree(short, ignore_errors=True)
