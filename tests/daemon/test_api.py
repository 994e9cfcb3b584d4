"""The daemon's API end to end over its Unix socket: sessions, cells, llm_query, audit."""

from __future__ import annotations

import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rlmbox.daemon.client import Client
from rlmbox.daemon.limits import DaemonLimits
from rlmbox.daemon.store import SessionRow, Store
from rlmbox.daemon.survivors import is_running
from rlmbox.errors import AuditWriteError, DaemonError, SessionClosed, SessionKilled
from rlmbox.policies.model import load_policy

from .conftest import RunningDaemon, policy_file, stored_session


def test_health_needs_no_token(daemon: RunningDaemon) -> None:
    with Client(socket=daemon.socket, token="nonsense") as client:  # noqa: S106 - bad on purpose
        health = client.health()
    assert health["status"] == "ok"
    assert health["version"]


def test_socket_is_0600_in_a_0700_directory(daemon: RunningDaemon) -> None:
    mode = daemon.socket.stat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600
    assert stat.S_IMODE(daemon.socket.parent.stat().st_mode) == 0o700


def test_state_directory_and_database_are_private(daemon: RunningDaemon) -> None:
    state = daemon.config.state_dir
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "rlmbox.db").stat().st_mode) == 0o600


def test_session_persists_state_and_llm_query_uses_the_daemons_lm(
        daemon: RunningDaemon) -> None:
    with daemon.client("alice") as client:
        info = client.create_session(context="the quick brown fox")
        assert info["state"] == "open"
        assert info["policy"] == "test"
        assert len(info["policy_sha256"]) == 64
        assert client.exec(info["id"], "x = len(context)").ok
        result = client.exec(info["id"], "print(x)\nprint(llm_query('hello'))")
        assert result.ok, result.error
        assert result.stdout == "19\ndaemon-lm saw: hello\n"
        assert result.host_calls == 1
        answer = client.exec(info["id"], "FINAL({'n': x})")
        assert answer.has_answer
        assert answer.answer == {"n": 19}
        client.close_session(info["id"])
        assert client.session(info["id"])["state"] == "closed"
        with pytest.raises(SessionClosed):
            client.exec(info["id"], "print(1)")


def test_json_context_arrives_as_an_object(daemon: RunningDaemon) -> None:
    with daemon.client("alice") as client:
        info = client.create_session(context={"docs": ["a", "bb"]})
        result = client.exec(info["id"], "print(len(context['docs'][1]))")
        client.close_session(info["id"])
    assert result.stdout == "2\n"


def test_audit_events_carry_the_tenant_and_page(daemon: RunningDaemon) -> None:
    with daemon.client("alice") as client:
        info = client.create_session()
        client.exec(info["id"], "print(1)")
        client.close_session(info["id"])
        events, _ = client.audit(session=info["id"], limit=1000)
        names = [e["event"] for e in events]
        assert names[0] == "session.create"
        assert {"code.exec", "cell.result", "session.end"} <= set(names)
        assert all(e["tenant"] == "alice" for e in events)
        first, next_after = client.audit(session=info["id"], limit=2)
        assert len(first) == 2
        assert next_after is not None
        assert next_after == first[-1]["seq"]
        rest, _ = client.audit(session=info["id"], after_seq=next_after, limit=1000)
        assert [e["seq"] for e in first + rest] == [e["seq"] for e in events]


def test_sessions_lists_only_the_callers(daemon: RunningDaemon) -> None:
    with daemon.client("alice") as alice, daemon.client("bob") as bob:
        a = alice.create_session()
        b = bob.create_session()
        assert [s["id"] for s in alice.sessions()] == [a["id"]]
        assert [s["id"] for s in bob.sessions()] == [b["id"]]
        alice.close_session(a["id"])
        bob.close_session(b["id"])


def test_two_execs_on_one_session_run_one_after_the_other(daemon: RunningDaemon) -> None:
    with daemon.client("alice") as client:
        info = client.create_session()
        client.exec(info["id"], "import time\nlog = []")
        cell = ("log.append(('start', {n}))\ntime.sleep(0.3)\nlog.append(('end', {n}))")
        errors: list[BaseException] = []

        def run(n: int) -> None:
            try:
                assert client.exec(info["id"], cell.format(n=n)).ok
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(n,)) for n in (1, 2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not errors
        result = client.exec(info["id"], "print(log)")
        client.close_session(info["id"])
    log = eval(result.stdout)  # noqa: S307 - our own repr of a list of tuples
    assert [kind for kind, _ in log] == ["start", "end", "start", "end"]
    assert log[0][1] == log[1][1]


def test_a_cell_that_ignores_its_interrupt_leaves_the_session_killed(
        daemon: RunningDaemon) -> None:
    with daemon.client("alice") as client:
        info = client.create_session()
        result = client.exec(info["id"], "import signal, time\n"
                             "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                             "while True:\n    time.sleep(0.01)", timeout=1)
        assert result.status == "killed"
        assert client.session(info["id"])["state"] == "killed"
        with pytest.raises(SessionKilled):
            client.exec(info["id"], "print(1)")
        client.close_session(info["id"])
        assert client.session(info["id"])["state"] == "killed"


def test_unknown_session_is_404(daemon: RunningDaemon) -> None:
    with daemon.client("alice") as client, pytest.raises(DaemonError) as info:
        client.exec("s-0000000000000000", "print(1)")
    assert info.value.status == 404
    assert info.value.type == "NotFound"


def test_revoked_socket_file_is_removed_on_stop(daemon: RunningDaemon) -> None:
    path: Path = daemon.socket
    daemon.stop()
    assert not path.exists()


def test_sessions_past_their_wall_time_are_reaped(
        start_daemon: Callable[..., RunningDaemon], tmp_path: Path) -> None:
    limits = {**load_policy(policy_file(tmp_path)).limits.model_dump(),
              "session_timeout_s": 1}
    short = load_policy(policy_file(tmp_path, "short", limits=limits))
    running = start_daemon(policies={"short": short}, reap_every_s=0.2)
    with running.client("alice") as client:
        info = client.create_session()
        store = Store(running.config.state_dir)   # the reaper may already have closed it
        try:
            row = store.session(info["id"], "alice")
        finally:
            store.close()
        assert row is not None
        processes = row.sandbox_pids
        assert processes
        deadline = time.monotonic() + 120
        while client.session(info["id"])["state"] == "open" and time.monotonic() < deadline:
            time.sleep(0.1)
        record = client.session(info["id"])
    assert record["state"] == "closed"
    assert "session_timeout_s" in record["reason"]
    assert not [pid for pid, started in processes if is_running(pid, started)]


def test_a_tenant_cannot_hold_more_sessions_than_the_cap(
        start_daemon: Callable[..., RunningDaemon]) -> None:
    """Exhaustion: concurrent creates past the cap are refused with 429, other tenants
    are unaffected, and closing one frees a slot."""
    running = start_daemon(limits=DaemonLimits(sessions_per_tenant=2, cells_per_tenant=4))
    with running.client("alice") as alice, running.client("bob") as bob:
        outcomes: list[object] = []

        def create() -> None:
            try:
                outcomes.append(alice.create_session()["id"])
            except DaemonError as exc:
                outcomes.append(exc)

        threads = [threading.Thread(target=create) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        opened = [o for o in outcomes if isinstance(o, str)]
        refused = [o for o in outcomes if isinstance(o, DaemonError)]
        assert len(opened) == 2
        assert [(e.status, e.type) for e in refused] == [(429, "TooManySessions")] * 2
        other = bob.create_session()   # the cap is per tenant
        alice.close_session(opened[0])
        again = alice.create_session()
        for sid in (opened[1], again["id"]):
            alice.close_session(sid)
        bob.close_session(other["id"])


def test_a_failed_audit_log_fails_closed_and_the_daemon_still_stops_cleanly(
        daemon: RunningDaemon) -> None:
    """Invariant 4 through the daemon: once the log cannot be written, cells are refused
    with AuditWriteError (503); closing still kills the sandbox and records the state."""
    with daemon.client("alice") as client:
        info = client.create_session()
        row = _row(daemon, info["id"])
        daemon.daemon._audit.close()   # the log is gone: nothing more can be recorded
        with pytest.raises(AuditWriteError):
            client.exec(info["id"], "print(1)")
        assert client.health()["status"] == "ok"
        with pytest.raises(AuditWriteError):
            client.close_session(info["id"])
        assert client.session(info["id"])["state"] == "closed"
    assert not [pid for pid, started in row.sandbox_pids if is_running(pid, started)]
    daemon.stop()
    assert not daemon.socket.exists()


def _row(daemon: RunningDaemon, session_id: str) -> SessionRow:
    return stored_session(daemon.config.state_dir, "alice", session_id)
