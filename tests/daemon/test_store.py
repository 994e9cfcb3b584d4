"""The SQLite state: WAL, a schema version, refusal of a newer schema, hashed tokens."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from rlmbox.daemon.store import MIGRATIONS, Store
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
