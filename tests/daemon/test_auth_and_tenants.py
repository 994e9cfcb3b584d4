"""Bearer tokens and tenant isolation: no token, no access; no tenant sees another's."""

from __future__ import annotations

import httpx
import pytest

from rlmbox.daemon.client import Client
from rlmbox.daemon.store import Store
from rlmbox.errors import DaemonError

from .conftest import RunningDaemon


def _raw(daemon: RunningDaemon, headers: dict[str, str]) -> httpx.Response:
    transport = httpx.HTTPTransport(uds=str(daemon.socket))
    with httpx.Client(transport=transport, base_url="http://rlmbox") as http:
        return http.get("/v1/sessions", headers=headers)


@pytest.mark.parametrize("header", [
    None, "", "Bearer", "bearer  nonsense", "Basic dXNlcjpwYXNz", "Bearer nonsense",
    "Bearer rbx.t-000000000000.AAAA", "Bearer rbx.." + "a" * 600,
])
def test_missing_or_bad_token_is_401(daemon: RunningDaemon, header: str | None) -> None:
    response = _raw(daemon, {} if header is None else {"Authorization": header})
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "Unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_token_with_a_wrong_secret_is_401(daemon: RunningDaemon) -> None:
    good = daemon.token("alice")
    prefix, token_id, secret = good.split(".")
    forged = f"{prefix}.{token_id}.{'A' * len(secret)}"
    assert _raw(daemon, {"Authorization": f"Bearer {forged}"}).status_code == 401
    assert _raw(daemon, {"Authorization": f"Bearer {good}"}).status_code == 200


def test_revoked_token_is_refused_while_the_daemon_runs(daemon: RunningDaemon) -> None:
    token = daemon.token("alice")
    with Client(socket=daemon.socket, token=token) as client:
        assert client.sessions() == []
        store = Store(daemon.config.state_dir)
        try:
            token_id = token.split(".")[1]
            assert store.revoke_token(token_id)
            assert not store.revoke_token(token_id)   # already revoked
        finally:
            store.close()
        with pytest.raises(DaemonError) as info:
            client.sessions()
    assert info.value.status == 401


def test_tokens_are_stored_only_as_hashes(daemon: RunningDaemon) -> None:
    token = daemon.token("alice")
    secret = token.split(".")[2]
    db = (daemon.config.state_dir / "rlmbox.db").read_bytes()
    wal = daemon.config.state_dir / "rlmbox.db-wal"
    data = db + (wal.read_bytes() if wal.exists() else b"")
    assert secret.encode() not in data
    assert token.encode() not in data


def test_another_tenants_session_is_404_exactly_like_a_missing_one(
        daemon: RunningDaemon) -> None:
    with daemon.client("alice") as alice, daemon.client("bob") as bob:
        mine = alice.create_session()
        alice.exec(mine["id"], "secret = 'alice-only'")
        answers = []
        for session_id in (mine["id"], "s-ffffffffffffffff"):
            for call in (bob.session,
                         lambda sid: bob.exec(sid, "print(secret)"),
                         bob.close_session,
                         lambda sid: bob.audit(session=sid)):
                with pytest.raises(DaemonError) as info:
                    call(session_id)
                answers.append((info.value.status, info.value.type,
                                str(info.value).replace(session_id, "ID")))
        assert answers[:4] == answers[4:]
        assert {a[0] for a in answers} == {404}
        # alice's session is untouched by bob's attempts
        assert alice.session(mine["id"])["state"] == "open"
        assert alice.exec(mine["id"], "print(secret)").stdout == "alice-only\n"
        alice.close_session(mine["id"])


def test_a_tenant_sees_none_of_anothers_audit_events(daemon: RunningDaemon) -> None:
    with daemon.client("alice") as alice, daemon.client("bob") as bob:
        a = alice.create_session()
        alice.exec(a["id"], "print('alice was here')")
        alice.close_session(a["id"])
        b = bob.create_session()
        bob.close_session(b["id"])
        bob_events, _ = bob.audit(limit=1000)
        alice_events, _ = alice.audit(limit=1000)
    assert bob_events
    assert {e["tenant"] for e in bob_events} == {"bob"}
    assert a["id"] not in {e.get("session") for e in bob_events}
    assert {e["tenant"] for e in alice_events} == {"alice"}
    assert a["id"] in {e.get("session") for e in alice_events}
