"""One tenant cannot starve the others (issue 11, finding 10): sessions (children
included), concurrent cells, request rate and audit bytes are capped per tenant and for
the whole daemon; each refusal is a 429 (the tenant's limit) or 503 (the daemon's), with
Retry-After where waiting helps, and an audit event that holds no token."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from rlmbox.audit.reader import iter_records
from rlmbox.daemon import app as daemon_app
from rlmbox.daemon import validation
from rlmbox.daemon.client import Client
from rlmbox.daemon.limits import DaemonLimits
from rlmbox.errors import DaemonError

from .conftest import RunningDaemon


def _refusals(running: RunningDaemon) -> list[dict[str, Any]]:
    running.daemon._audit.sync()
    return [r for r in iter_records(running.daemon.audit_dir)
            if r.get("event") == "request.refused"]


def test_rlm_query_children_count_against_the_tenants_session_cap(
        start_daemon: Callable[..., RunningDaemon]) -> None:
    """With a cap of one session, the session's own ``rlm_query`` child is refused before
    any sandbox starts: a child is a session of the tenant's."""
    running = start_daemon(limits=DaemonLimits(sessions_per_tenant=1))
    with running.client("alice") as alice:
        info = alice.create_session()
        result = alice.exec(info["id"], "print(rlm_query('a child task'))")
        assert result.status == "error"
        assert "TooManySessions" in (result.error or "") or "children included" in (
            result.error or "")
        with pytest.raises(DaemonError) as refused:
            alice.create_session()
        assert (refused.value.status, refused.value.type) == (429, "TooManySessions")
        alice.close_session(info["id"])
        again = alice.create_session()   # closing freed the slot
        alice.close_session(again["id"])
    creates = [r for r in iter_records(running.daemon.audit_dir)
               if r.get("event") == "session.create" and r.get("tenant") == "alice"]
    assert all(r.get("parent") is None for r in creates)   # no child ever started


def test_the_daemon_wide_session_cap_is_a_503_with_retry_after(
        start_daemon: Callable[..., RunningDaemon]) -> None:
    running = start_daemon(limits=DaemonLimits(sessions=2, sessions_per_tenant=2))
    with running.client("alice") as alice, running.client("bob") as bob:
        first, second = alice.create_session(), bob.create_session()
        with pytest.raises(DaemonError) as busy:
            bob.create_session()
        assert (busy.value.status, busy.value.type) == (503, "DaemonBusy")
        assert busy.value.retry_after_s is not None
        assert busy.value.retry_after_s >= 1
        alice.close_session(first["id"])
        bob.close_session(second["id"])


def test_a_tenant_runs_at_most_its_cells_at_once_and_others_still_run(
        start_daemon: Callable[..., RunningDaemon]) -> None:
    running = start_daemon(limits=DaemonLimits(cells_per_tenant=1))
    with running.client("alice") as alice, running.client("bob") as bob:
        one, two = alice.create_session(), alice.create_session()
        theirs = bob.create_session()
        started = threading.Event()
        slow: list[object] = []

        def sleepy() -> None:
            started.set()
            slow.append(alice.exec(one["id"], "import time; time.sleep(4); print('slept')"))

        worker = threading.Thread(target=sleepy)
        worker.start()
        started.wait(10)
        time.sleep(1.0)   # the slow cell holds alice's one slot by now
        with pytest.raises(DaemonError) as refused:
            alice.exec(two["id"], "print(2)")
        assert (refused.value.status, refused.value.type) == (429, "TooManyCells")
        assert refused.value.retry_after_s == 1
        assert bob.exec(theirs["id"], "print('bob runs')").stdout == "bob runs\n"
        worker.join(60)
        assert [getattr(r, "stdout", r) for r in slow] == ["slept\n"]
        assert alice.exec(two["id"], "print(2)").stdout == "2\n"   # the slot is free again
        for sid in (one["id"], two["id"]):
            alice.close_session(sid)
        bob.close_session(theirs["id"])


def test_request_rate_is_limited_per_tenant_with_retry_after_and_audited(
        start_daemon: Callable[..., RunningDaemon]) -> None:
    """Ten requests at once against a burst of two: eight 429s, each answered after the
    tarpit pause; bob is unaffected; the refusals are audited in fewer events that
    count them all, and no event holds the token."""
    running = start_daemon(limits=DaemonLimits(requests_per_s_per_tenant=0.2,
                                               request_burst_per_tenant=2))
    token = running.token("alice")
    outcomes: list[tuple[object, float]] = []

    def request() -> None:
        with Client(socket=running.socket, token=token) as alice:
            start = time.monotonic()
            try:
                outcomes.append((alice.sessions(), time.monotonic() - start))
            except DaemonError as exc:
                outcomes.append((exc, time.monotonic() - start))

    threads = [threading.Thread(target=request) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    refused = [(e, took) for e, took in outcomes if isinstance(e, DaemonError)]
    assert len(refused) == 8
    assert {(e.status, e.type) for e, _ in refused} == {(429, "RateLimited")}
    assert all(1 <= (e.retry_after_s or 0) <= 5 for e, _ in refused)   # a token every 5 s
    assert min(took for _, took in refused) >= daemon_app.TARPIT_S * 0.9
    with running.client("bob") as bob:
        assert bob.sessions() == []   # bob's bucket is his own
    time.sleep(1.1)   # past the refusal-audit interval: the next refusal writes an event
    with Client(socket=running.socket, token=token) as alice, pytest.raises(DaemonError):
        alice.sessions()
    events = [e for e in _refusals(running) if e["tenant"] == "alice"]
    assert {e["error"] for e in events} == {"RateLimited"}
    assert sum(e["refusals"] for e in events) == len(refused) + 1
    assert len(events) < len(refused) + 1   # rate-limited itself
    log_text = b"".join(p.read_bytes() for p in running.daemon.audit_dir.glob("audit*.jsonl"))
    assert token.encode() not in log_text
    assert token.split(".")[2].encode() not in log_text


def test_a_tenant_over_its_audit_quota_gets_no_new_work_and_others_do(
        start_daemon: Callable[..., RunningDaemon]) -> None:
    running = start_daemon(limits=DaemonLimits(audit_bytes_per_tenant=200_000),
                           index_every_s=0.05)
    with running.client("alice") as alice, running.client("bob") as bob:
        info = alice.create_session()
        refused = _exec_until_refused(alice, info["id"], "print('x' * 20000)")
        assert (refused.status, refused.type) == (403, "AuditQuotaExceeded")
        with pytest.raises(DaemonError, match="quota"):
            alice.create_session()
        theirs = bob.create_session()
        assert bob.exec(theirs["id"], "print('bob')").stdout == "bob\n"
        bob.close_session(theirs["id"])
        alice.close_session(info["id"])   # closing is never refused
    used = running.daemon._index.tenant_bytes("alice")
    assert 200_000 <= used < 200_000 + 100_000   # overshoot: at most a cell or two


def _exec_until_refused(client: Client, session_id: str, code: str) -> DaemonError:
    for _ in range(200):
        try:
            client.exec(session_id, code)
        except DaemonError as exc:
            return exc
        time.sleep(0.06)   # the index catches up every 0.05 s
    raise AssertionError("never refused")


def test_a_large_body_is_parsed_off_the_event_loop(
        daemon: RunningDaemon, monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[str] = []
    real = validation.parse_body

    def spy(model: Any, raw: bytes) -> Any:
        threads.append(threading.current_thread().name)
        return real(model, raw)

    monkeypatch.setattr(daemon_app, "parse_body", spy)
    with daemon.client("alice") as client:
        small = client.create_session(context="tiny")
        big = client.create_session(context="y" * (2 * daemon_app.OFFLOAD_BYTES))
        assert client.exec(big["id"], "print(len(context))").stdout == (
            f"{2 * daemon_app.OFFLOAD_BYTES}\n")
        for sid in (small["id"], big["id"]):
            client.close_session(sid)
    loop_thread = daemon.thread.name
    assert threads[0] == loop_thread                 # a small body: parsed in place
    assert threads[1].startswith("rlmbox-parse")     # a large one: on the parse thread
