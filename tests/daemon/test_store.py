"""The SQLite state: WAL, a schema version, refusal of a newer schema, hashed tokens."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from rlmbox.daemon.store import MIGRATIONS, SessionRow, Store
from rlmbox.errors import DaemonError


def test_a_new_database_is_wal_at_the_latest_schema(tmp_path: Path) -> None:
    store = Store(tmp_path)
    try:
        assert store.schema_version == len(MIGRATIONS)
    finally:
        store.close()
    with sqlite3.connect(tmp_path / "rlmbox.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"tenants", "tokens", "sessions"} <= tables


def test_reopening_does_not_migrate_twice(tmp_path: Path) -> None:
    Store(tmp_path).close()
    store = Store(tmp_path)
    try:
        _, secret = store.create_token("alice")
        assert store.authenticate(secret) == "alice"
    finally:
        store.close()


def test_a_schema_newer_than_this_rlmbox_is_refused(tmp_path: Path) -> None:
    Store(tmp_path).close()
    with sqlite3.connect(tmp_path / "rlmbox.db") as db:
        db.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    with pytest.raises(DaemonError, match="newer than this rlmbox"):
        Store(tmp_path)


@pytest.mark.parametrize("tenant", ["", "a" * 129, "line\nbreak"])
def test_bad_tenant_names_are_refused(tmp_path: Path, tenant: str) -> None:
    store = Store(tmp_path)
    try:
        with pytest.raises(DaemonError):
            store.create_token(tenant)
        assert store.tokens() == []
    finally:
        store.close()


def test_a_token_authenticates_only_its_own_tenant_and_not_after_revocation(
        tmp_path: Path) -> None:
    store = Store(tmp_path)
    try:
        a_row, a_secret = store.create_token("alice")
        _, b_secret = store.create_token("bob")
        assert store.authenticate(a_secret) == "alice"
        assert store.authenticate(b_secret) == "bob"
        # bob's secret under alice's token id: the id finds the row, the digest refuses
        swapped = ".".join([*a_secret.split(".")[:2], b_secret.split(".")[2]])
        assert store.authenticate(swapped) is None
        assert store.revoke_token(a_row.id)
        assert store.authenticate(a_secret) is None
        assert store.authenticate(b_secret) == "bob"
    finally:
        store.close()


class _SlowWrites:
    """Stands in for the writer connection: every write statement takes half a second,
    as a commit's fsync can on a busy disk."""

    def __init__(self, real: sqlite3.Connection) -> None:
        self._real = real

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        if sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            time.sleep(0.5)
        return self._real.execute(sql, params)

    def close(self) -> None:
        self._real.close()


def test_reads_do_not_wait_for_a_write_in_progress(tmp_path: Path) -> None:
    """The daemon authenticates every request and looks sessions up on its event loop:
    a write another thread is committing (one tenant's session starting or ending) must
    not stall them, or one tenant's churn pauses every tenant's requests."""
    store = Store(tmp_path)
    _, secret = store.create_token("acme")
    store.add_session(_row("s-1", "acme"))
    store._db = _SlowWrites(store._db)   # type: ignore[assignment]
    writer = threading.Thread(target=store.add_session, args=(_row("s-2", "acme"),))
    writer.start()
    time.sleep(0.05)   # the write holds the writer connection now
    started = time.monotonic()
    assert store.authenticate(secret) == "acme"
    assert store.session("s-1", "acme") is not None
    assert [row.id for row in store.sessions("acme", 10)] == ["s-1"]   # s-2 not committed
    waited = time.monotonic() - started
    writer.join()
    assert waited < 0.2, f"reads waited {waited:.3f} s behind the write"
    assert [row.id for row in store.sessions("acme", 10)] == ["s-2", "s-1"]
    store.close()


def _row(session_id: str, tenant: str) -> SessionRow:
    return SessionRow(id=session_id, tenant=tenant, policy="default", policy_sha256="0" * 64,
                      backend="process", sandbox_id=None, sandbox_pids=[], state="open",
                      created=time.time(), closed=None, reason=None)
