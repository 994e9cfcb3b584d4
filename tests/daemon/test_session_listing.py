"""``GET /v1/sessions`` pages: a tenant with more sessions than one page sees every one of
them, newest first, none twice (the listing used to stop silently at the newest 1,000),
and a bad page request is a 400 that names what is wrong."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from rlmbox.daemon.store import SessionRow, Store

from .conftest import RunningDaemon


def test_every_session_is_listed_across_pages_newest_first(daemon: RunningDaemon) -> None:
    with daemon.client("alice") as alice, daemon.client("bob") as bob:
        made = [alice.create_session()["id"] for _ in range(5)]
        bob.create_session()
        first, cursor = alice.sessions_page(limit=2)
        assert [s["id"] for s in first] == made[::-1][:2]
        assert cursor == made[-2]
        second, cursor = alice.sessions_page(before=cursor, limit=2)
        assert [s["id"] for s in second] == made[::-1][2:4]
        last, cursor = alice.sessions_page(before=cursor, limit=2)
        assert [s["id"] for s in last] == [made[0]]
        assert cursor is None
        assert [s["id"] for s in alice.sessions()] == made[::-1]


def test_a_full_last_page_says_there_is_no_next_one(daemon: RunningDaemon) -> None:
    with daemon.client("alice") as alice:
        made = [alice.create_session()["id"] for _ in range(2)]
        page, cursor = alice.sessions_page(limit=2)
        assert [s["id"] for s in page] == made[::-1]
        assert cursor is None


@pytest.mark.parametrize(("query", "says"), [
    ("limit=0", "limit"),
    ("limit=1001", "limit"),
    ("limit=ten", "limit"),
    ("before=no-such-session", "before"),
    ("order=asc", "unknown query parameters: order"),
])
def test_a_bad_page_request_is_a_400_naming_the_problem(http: httpx.Client, query: str,
                                                         says: str) -> None:
    answer = http.get(f"/v1/sessions?{query}")
    assert answer.status_code == 400, answer.text
    assert says in answer.json()["error"]["message"]


def test_another_tenants_session_is_no_cursor(daemon: RunningDaemon,
                                             http: httpx.Client) -> None:
    """Bob's session id, given by alice as ``before``, reads as unknown: the listing tells
    alice nothing about bob's sessions (not even that the id exists)."""
    with daemon.client("bob") as bob:
        theirs = bob.create_session()["id"]
    mine = http.get(f"/v1/sessions?before={theirs}")
    unknown = http.get("/v1/sessions?before=s-0000")
    assert mine.status_code == unknown.status_code == 400
    assert mine.json()["error"]["message"].replace(theirs, "X") == \
        unknown.json()["error"]["message"].replace("s-0000", "X")


def test_sessions_made_in_the_same_instant_are_each_listed_once(tmp_path: Path) -> None:
    """Pages are cut by (created, id): sessions that share a timestamp (a clock with coarse
    ticks, a burst of creates) are neither skipped nor repeated at a page's edge."""
    store = Store(tmp_path)
    try:
        store.create_token("alice")
        store.create_token("bob")
        ids = [f"s-{n:02}" for n in range(7)]
        for n, session_id in enumerate(ids):
            store.add_session(SessionRow(session_id, "alice", "test", "0" * 64, "process",
                                         None, [], "open", 1000.0 + n // 3, None, None))
        store.add_session(SessionRow("s-bob", "bob", "test", "0" * 64, "process", None, [],
                                     "open", 1001.0, None, None))
        seen: list[str] = []
        before: str | None = None
        while True:
            page = store.sessions("alice", 2, before)
            seen += [row.id for row in page]
            if len(page) < 2:
                break
            before = page[-1].id
    finally:
        store.close()
    assert seen == ["s-06", "s-05", "s-04", "s-03", "s-02", "s-01", "s-00"]


def test_the_audit_page_refuses_a_repeated_parameter_too(http: httpx.Client) -> None:
    answer = http.get("/v1/audit?limit=1&limit=5")
    assert answer.status_code == 400, answer.text
    assert "given more than once: limit" in answer.json()["error"]["message"]
