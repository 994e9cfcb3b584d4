"""GET /v1/sessions/{id}/view: the viewer's report of the caller's own session; another
tenant gets the same 404 as for an unknown id, and no token gets 401."""

from __future__ import annotations

import httpx

from tests.daemon.conftest import RunningDaemon

PRINTED = "<script>alert('from the sandbox')</script>"


def view(running: RunningDaemon, session_id: str, token: str | None) -> httpx.Response:
    transport = httpx.HTTPTransport(uds=str(running.socket))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(transport=transport, base_url="http://rlmbox", headers=headers) as http:
        return http.get(f"/v1/sessions/{session_id}/view")


def test_a_tenant_sees_its_own_session_and_no_one_elses(daemon: RunningDaemon) -> None:
    alice_token, bob_token = daemon.token("alice"), daemon.token("bob")
    with daemon.client("alice") as alice:
        session_id = alice.create_session()["id"]
        assert alice.exec(session_id, f"print({PRINTED!r})").status == "ok"
    with daemon.client("bob") as bob:
        bobs = bob.create_session()["id"]

    own = view(daemon, session_id, alice_token)
    assert own.status_code == 200
    assert own.headers["content-type"].startswith("text/html")
    assert "script-src" not in own.headers["content-security-policy"]
    assert "default-src 'none'" in own.headers["content-security-policy"]
    assert session_id in own.text
    assert PRINTED not in own.text            # the sandbox's markup is escaped
    assert bobs not in own.text               # another tenant's session is not shown

    other = view(daemon, session_id, bob_token)
    assert other.status_code == 404
    assert other.json()["error"]["type"] == "NotFound"
    assert view(daemon, "s-0000000000000000", alice_token).status_code == 404
    assert view(daemon, session_id, None).status_code == 401
