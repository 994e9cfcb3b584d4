"""``GET /v1/exec/socket``: one persistent WebSocket, one exec per message, with every
guarantee of ``POST .../exec`` on every message (a real daemon)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from rlmbox.audit.reader import iter_records
from rlmbox.daemon import app as daemon_app
from rlmbox.daemon.client import Client
from rlmbox.daemon.limits import DaemonLimits
from rlmbox.daemon.store import Store
from rlmbox.errors import DaemonError, SessionClosed

from .conftest import RunningDaemon

PATH = "/v1/exec/socket"


async def _exchange(daemon: RunningDaemon, token: str | None,
                    messages: list[str | bytes]) -> tuple[list[dict[str, Any]], bool]:
    """Opens the socket by hand, sends each message and reads its answer; whether the
    socket is still open at the end."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answers = []
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(str(daemon.socket)),
                                     headers=headers) as http, \
            http.ws_connect(f"http://rlmbox{PATH}") as ws:
        for message in messages:
            if isinstance(message, bytes):
                await ws.send_bytes(message)
            else:
                await ws.send_str(message)
            reply = await ws.receive(timeout=60)
            answers.append(json.loads(reply.data))
        return answers, not ws.closed


def _exchange_now(daemon: RunningDaemon, token: str | None,
                  messages: list[str | bytes]) -> tuple[list[dict[str, Any]], bool]:
    return asyncio.run(_exchange(daemon, token, messages))


def test_many_cells_run_over_one_socket(daemon: RunningDaemon) -> None:
    """The client's exec goes over one kept WebSocket, and the REPL is the session's."""
    token = daemon.token("alice")
    with Client(socket=daemon.socket, token=token) as alice:
        sid = alice.create_session()["id"]
        alice.exec(sid, "x = 1")
        results = [alice.exec(sid, "x += 1; print(x)") for _ in range(5)]
        assert [r.stdout for r in results] == [f"{n}\n" for n in range(2, 7)]
        assert alice.exec_sockets_opened == 1
        assert alice.exec(sid, "FINAL(x)").answer == 6
        alice.close_session(sid)


def test_messages_answer_in_order_and_a_bad_one_leaves_the_socket_open(
        daemon: RunningDaemon) -> None:
    """Bad input is a 400 error message, never a 5xx and never a closed socket."""
    token = daemon.token("alice")
    with Client(socket=daemon.socket, token=token) as alice:
        sid = alice.create_session()["id"]
    answers, still_open = _exchange_now(daemon, token, [
        "not json",
        json.dumps({"session": sid, "code": "x = 1", "typo": 1}),
        json.dumps({"session": sid, "code": 7}),
        json.dumps({"code": "x = 1"}),
        b"\x00binary",
        json.dumps({"session": sid, "code": "print('ok')"}),
    ])
    assert [a["type"] for a in answers] == ["error"] * 5 + ["result"]
    assert {(a["status"], a["error"]["type"]) for a in answers[:5]} == {
        (400, "InvalidRequest")}
    assert answers[5]["stdout"] == "ok\n"
    assert still_open


def test_an_unauthenticated_open_is_refused(daemon: RunningDaemon) -> None:
    unknown = "rbx.t-0.nope"   # a token no store holds
    with Client(socket=daemon.socket, token=unknown) as stranger, \
            pytest.raises(DaemonError) as refused:
        stranger.exec("s-anything", "print(1)")
    assert (refused.value.status, refused.value.type) == (401, "Unauthorized")


def test_a_token_revoked_after_the_open_is_refused_on_the_next_message(
        daemon: RunningDaemon) -> None:
    """Authentication is checked on every message, not only at the open."""
    token = daemon.token("alice")
    with Client(socket=daemon.socket, token=token) as alice:
        sid = alice.create_session()["id"]
        assert alice.exec(sid, "print(1)").stdout == "1\n"
        store = Store(daemon.config.state_dir)
        try:
            assert store.revoke_token(token.split(".")[1])
        finally:
            store.close()
        with pytest.raises(DaemonError) as refused:
            alice.exec(sid, "print('after revocation')")
        assert (refused.value.status, refused.value.type) == (401, "Unauthorized")
        assert alice.exec_sockets_opened == 1   # refused on the socket it had open


def test_another_tenants_session_reads_as_unknown(daemon: RunningDaemon) -> None:
    with daemon.client("alice") as alice, daemon.client("bob") as bob:
        sid = alice.create_session()["id"]
        with pytest.raises(DaemonError) as hidden:
            bob.exec(sid, "print('not yours')")
        assert (hidden.value.status, hidden.value.type) == (404, "NotFound")
        alice.close_session(sid)
        with pytest.raises(SessionClosed):
            alice.exec(sid, "print(1)")


def test_each_message_takes_a_request_token_of_the_tenant(
        start_daemon: Callable[..., RunningDaemon]) -> None:
    """The open and each message count against the tenant's request rate: a burst of
    four covers the create, the open and two cells; the next cell is a 429 with
    Retry-After, and the refusal is audited."""
    running = start_daemon(limits=DaemonLimits(requests_per_s_per_tenant=0.01,
                                               request_burst_per_tenant=4))
    with running.client("alice") as alice:
        sid = alice.create_session()["id"]
        alice.exec(sid, "x = 1")
        alice.exec(sid, "x = 2")
        started = time.monotonic()
        with pytest.raises(DaemonError) as limited:
            alice.exec(sid, "x = 3")
        assert time.monotonic() - started >= 0.9   # the tarpit pause, as over HTTP
    assert (limited.value.status, limited.value.type) == (429, "RateLimited")
    assert limited.value.retry_after_s is not None
    assert limited.value.retry_after_s >= 1
    running.daemon._audit.sync()
    refused = [r for r in iter_records(running.daemon.audit_dir)
               if r.get("event") == "request.refused"]
    assert [(r["tenant"], r["route"], r["status"]) for r in refused] == [
        ("alice", PATH, 429)]


def test_the_tenants_cell_cap_holds_on_the_socket(
        start_daemon: Callable[..., RunningDaemon]) -> None:
    running = start_daemon(limits=DaemonLimits(cells_per_tenant=1))
    with running.client("alice") as alice:
        one, two = alice.create_session()["id"], alice.create_session()["id"]
        started = threading.Event()
        slow: list[object] = []

        def sleepy() -> None:
            started.set()
            slow.append(alice.exec(one, "import time; time.sleep(3); print('slept')"))

        worker = threading.Thread(target=sleepy)
        worker.start()
        started.wait(10)
        time.sleep(1.0)   # the slow cell holds alice's one slot by now
        with pytest.raises(DaemonError) as refused:
            alice.exec(two, "print(2)")
        assert (refused.value.status, refused.value.type) == (429, "TooManyCells")
        worker.join(60)
        assert [getattr(r, "stdout", r) for r in slow] == ["slept\n"]
        assert alice.exec_sockets_opened == 2   # the two threads had a socket each


def test_cells_over_the_socket_are_audited_as_the_tenants(daemon: RunningDaemon) -> None:
    with daemon.client("alice") as alice:
        sid = alice.create_session()["id"]
        alice.exec(sid, "print('audited')")
        alice.close_session(sid)
    daemon.daemon._audit.sync()
    results = [r for r in iter_records(daemon.daemon.audit_dir)
               if r.get("event") == "cell.result" and r.get("session") == sid]
    assert [r.get("tenant") for r in results] == ["alice"]


def test_a_plain_get_is_a_json_400(daemon: RunningDaemon) -> None:
    import httpx

    transport = httpx.HTTPTransport(uds=str(daemon.socket))
    with httpx.Client(transport=transport, base_url="http://rlmbox") as http:
        answer = http.get(PATH, headers={"Authorization": f"Bearer {daemon.token('a')}"})
    assert answer.status_code == 400
    assert answer.json()["error"]["type"] == "InvalidRequest"


def test_open_sockets_are_capped_per_tenant(
        start_daemon: Callable[..., RunningDaemon]) -> None:
    """Each open socket holds a thread of the daemon's: a tenant's beyond its cap is a
    429 at the upgrade, and another tenant still opens one."""
    running = start_daemon(limits=DaemonLimits(exec_sockets_per_tenant=1))
    with running.client("alice") as alice, running.client("alice") as again, \
            running.client("bob") as bob:
        sid = alice.create_session()["id"]
        assert alice.exec(sid, "print(1)").stdout == "1\n"   # alice's one socket stays open
        with pytest.raises(DaemonError) as refused:
            again.exec(sid, "print(2)")
        assert (refused.value.status, refused.value.type) == (429, "TooManySockets")
        theirs = bob.create_session()["id"]
        assert bob.exec(theirs, "print(3)").stdout == "3\n"
        alice.close()   # its socket closes; the slot is free again
        time.sleep(0.5)
        assert again.exec(sid, "print(4)").stdout == "4\n"


def test_a_socket_idle_too_long_is_closed_and_the_client_opens_another(
        start_daemon: Callable[..., RunningDaemon], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(daemon_app, "IDLE_S", 0.5)
    running = start_daemon()
    with running.client("alice") as alice:
        sid = alice.create_session()["id"]
        alice.exec(sid, "x = 1")
        time.sleep(1.5)   # the daemon's thread gave up on the socket
        assert alice.exec(sid, "print(x)").stdout == "1\n"
        assert alice.exec_sockets_opened == 2


def test_a_message_over_the_cap_closes_the_socket(
        start_daemon: Callable[..., RunningDaemon], monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon reads no message past its body cap: the socket closes (1009) and the
    client hears Unreachable; the daemon keeps serving."""
    monkeypatch.setattr(daemon_app, "MAX_BODY_BYTES", 4096)
    running = start_daemon()
    with running.client("alice") as alice:
        sid = alice.create_session()["id"]
        with pytest.raises(DaemonError) as broke:
            alice.exec(sid, "x = '" + "a" * 8192 + "'")
        assert broke.value.type == "Unreachable"
        assert alice.exec(sid, "print('still here')").stdout == "still here\n"


def test_stopping_the_daemon_ends_an_idle_socket_at_once(
        start_daemon: Callable[..., RunningDaemon]) -> None:
    running = start_daemon()
    with running.client("alice") as alice:
        sid = alice.create_session()["id"]
        alice.exec(sid, "x = 1")
        started = time.monotonic()
        running.stop()
        assert time.monotonic() - started < 4.0   # aiohttp waits 5 s for a handler left
        with pytest.raises(DaemonError) as gone:
            alice.exec(sid, "x = 2")
        assert gone.value.type == "Unreachable"
