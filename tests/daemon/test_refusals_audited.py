"""Failed access attempts are in the audit log (issue 17, bug 8): a bad token (401), another
tenant's session (404, the same answer as a session that does not exist), a forbidden
request (403). The record names tenant, route, status and error type; never a token."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from rlmbox.audit.reader import iter_records
from rlmbox.daemon.client import Client
from rlmbox.errors import DaemonError, SessionClosed

from .conftest import RunningDaemon


def _refused(running: RunningDaemon) -> list[dict[str, Any]]:
    running.daemon._audit.sync()
    return [r for r in iter_records(running.daemon.audit_dir)
            if r.get("event") == "request.refused"]


def test_bad_tokens_and_other_tenants_sessions_are_audited(
        start_daemon: Callable[..., RunningDaemon]) -> None:
    running = start_daemon()
    bad_token = "rbx_" + "x" * 40
    with Client(socket=running.socket, token=bad_token) as stranger, \
            pytest.raises(DaemonError) as denied:
        stranger.sessions()
    assert denied.value.status == 401
    with running.client("alice") as alice, running.client("bob") as bob:
        session = alice.create_session()["id"]
        time.sleep(1.1)   # refusals are recorded at most once a second per tenant
        with pytest.raises(DaemonError) as hidden:
            bob.exec(session, "print('not yours')")
        assert hidden.value.status == 404
        alice.close_session(session)
    refused = _refused(running)
    statuses = {(r.get("tenant"), r.get("status")) for r in refused}
    assert (None, 401) in statuses
    assert ("bob", 404) in statuses
    for record in refused:
        assert bad_token not in str(record)
        assert "route" in record


def test_exec_on_a_closed_session_is_audited(
        start_daemon: Callable[..., RunningDaemon]) -> None:
    """A request the engine refuses (here 409, the session is closed) is a failed attempt
    too: it leaves a request.refused record like the daemon's own refusals."""
    running = start_daemon()
    with running.client("carol") as carol:
        session = carol.create_session()["id"]
        carol.close_session(session)
        time.sleep(1.1)   # one refusal record a second per tenant
        with pytest.raises(SessionClosed):
            carol.exec(session, "print(1)")
    refused = [(r.get("tenant"), r.get("status"), r.get("error")) for r in _refused(running)]
    assert ("carol", 409, "SessionClosed") in refused, refused
