"""The daemon's state in SQLite: tenants, token hashes and sessions.

WAL mode with ``synchronous=FULL``: a session row is durable before the caller hears of
the session, so a crash never forgets a sandbox it started. The schema carries a version;
``MIGRATIONS[n]`` takes version n to n+1, so a later release adds a step, never edits one.
One daemon per state directory (an flock), while ``rlmbox token`` may write beside it.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlmbox.errors import DaemonError

DB_NAME = "rlmbox.db"
LOCK_NAME = "daemon.lock"
TOKEN_PREFIX = "rbx"  # noqa: S105 - a marker that makes leaked tokens greppable
SESSION_STATES = ("open", "closed", "lost", "killed")

_SELECT_SESSIONS = ("SELECT id, tenant, policy, policy_sha256, backend, sandbox_id, "
                    "sandbox_pids, state, created, closed, reason, node FROM sessions ")

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE tenants (name TEXT PRIMARY KEY, created REAL NOT NULL);
    CREATE TABLE tokens (
        id TEXT PRIMARY KEY, sha256 TEXT NOT NULL,
        tenant TEXT NOT NULL REFERENCES tenants(name),
        created REAL NOT NULL, revoked REAL);
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY, tenant TEXT NOT NULL REFERENCES tenants(name),
        policy TEXT NOT NULL, policy_sha256 TEXT NOT NULL, backend TEXT NOT NULL,
        sandbox_id TEXT, sandbox_pids TEXT NOT NULL DEFAULT '[]',
        state TEXT NOT NULL CHECK (state IN ('open', 'closed', 'lost', 'killed')),
        created REAL NOT NULL, closed REAL, reason TEXT);
    CREATE INDEX sessions_by_tenant ON sessions(tenant, created);
    CREATE INDEX sessions_by_state ON sessions(state);
    """,
    # the cluster node a session runs on (rlmbox serve --ray); NULL: on this machine
    """
    ALTER TABLE sessions ADD COLUMN node TEXT;
    """,
)


@dataclass(frozen=True)
class TokenRow:
    id: str
    tenant: str
    created: float
    revoked: float | None


@dataclass(frozen=True)
class SessionRow:
    id: str
    tenant: str
    policy: str
    policy_sha256: str
    backend: str
    sandbox_id: str | None
    sandbox_pids: list[tuple[int, str]]
    state: str
    created: float
    closed: float | None
    reason: str | None
    node: str | None = None   # the cluster node it ran on; None: this machine


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class Store:
    """One SQLite database; every method is thread-safe.

    Two connections, each behind its own lock: writes go through one, reads through the
    other. In WAL mode a reader sees the last commit without waiting for a commit in
    progress, so the lookups the event loop makes for every request (the token, the
    session) never stall behind another thread's fsync.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / DB_NAME
        fresh = not self.path.exists()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        if fresh:
            os.chmod(self.path, 0o600)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=10000")   # `rlmbox token` may write beside us
        self._migrate()
        self._reader = sqlite3.connect(self.path, check_same_thread=False,
                                       isolation_level=None)
        self._read_lock = threading.Lock()
        self._reader.execute("PRAGMA query_only=ON")
        self._reader.execute("PRAGMA busy_timeout=10000")

    def _migrate(self) -> None:
        with self._lock:
            version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
            if version > len(MIGRATIONS):
                raise DaemonError(f"{self.path} has schema version {version}, newer than "
                                  f"this rlmbox ({len(MIGRATIONS)}); upgrade rlmbox",
                                  type="Config")
            for number in range(version, len(MIGRATIONS)):
                self._db.execute("BEGIN IMMEDIATE")
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version={number + 1}")
                self._db.execute("COMMIT")

    @property
    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        with self._read_lock:
            self._reader.close()
        with self._lock:
            self._db.close()

    def _read(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        with self._read_lock:
            return self._reader.execute(sql, params).fetchall()

    def _write(self, sql: str, params: tuple[Any, ...]) -> int:
        with self._lock:
            return self._db.execute(sql, params).rowcount

    # --- tenants and tokens ----------------------------------------------------------

    def create_token(self, tenant: str) -> tuple[TokenRow, str]:
        """A new token for ``tenant`` (created if new); the secret is returned once and
        only its SHA-256 is stored."""
        if not tenant or len(tenant) > 128 or not tenant.isprintable():
            raise DaemonError("a tenant name is 1-128 printable characters", type="Config")
        token_id = "t-" + secrets.token_hex(6)
        secret = f"{TOKEN_PREFIX}.{token_id}.{secrets.token_urlsafe(32)}"
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("INSERT OR IGNORE INTO tenants(name, created) VALUES (?, ?)",
                                 (tenant, now))
                self._db.execute("INSERT INTO tokens(id, sha256, tenant, created) "
                                 "VALUES (?, ?, ?, ?)", (token_id, _digest(secret), tenant, now))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return TokenRow(token_id, tenant, now, None), secret

    def tokens(self) -> list[TokenRow]:
        rows = self._read("SELECT id, tenant, created, revoked FROM tokens ORDER BY created", ())
        return [TokenRow(*row) for row in rows]

    def revoke_token(self, token_id: str) -> bool:
        """True when an unrevoked token was revoked."""
        return self._write("UPDATE tokens SET revoked = ? WHERE id = ? AND revoked IS NULL",
                           (time.time(), token_id)) == 1

    def authenticate(self, token: str) -> str | None:
        """The tenant of a valid, unrevoked token, else None.

        The id in the token finds the row; the secret is checked with a constant-time
        comparison of digests, so timing says nothing about how much of it was right.
        """
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != TOKEN_PREFIX or len(token) > 512:
            return None
        found = self._read("SELECT sha256, tenant, revoked FROM tokens WHERE id = ?",
                           (parts[1],))
        row = found[0] if found else None
        expected = row[0] if row else _digest(secrets.token_hex(16))
        matches = hmac.compare_digest(_digest(token), expected)
        if row is None or not matches or row[2] is not None:
            return None
        return str(row[1])

    # --- sessions --------------------------------------------------------------------

    def add_session(self, row: SessionRow) -> None:
        self._write(
            "INSERT INTO sessions(id, tenant, policy, policy_sha256, backend, sandbox_id, "
            "sandbox_pids, state, created, node) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (row.id, row.tenant, row.policy, row.policy_sha256, row.backend, row.sandbox_id,
             json.dumps(row.sandbox_pids), row.state, row.created, row.node))

    def end_session(self, session_id: str, state: str, reason: str) -> None:
        """Moves an open session to ``state``; a session already ended keeps its state."""
        if state not in SESSION_STATES:
            raise ValueError(f"unknown session state {state!r}")
        self._write("UPDATE sessions SET state = ?, closed = ?, reason = ? "
                    "WHERE id = ? AND state = 'open'", (state, time.time(), reason, session_id))

    def session(self, session_id: str, tenant: str) -> SessionRow | None:
        """The session if ``tenant`` owns it: another tenant's looks exactly like none."""
        rows = self._select("WHERE id = ? AND tenant = ?", (session_id, tenant))
        return rows[0] if rows else None

    def sessions(self, tenant: str, limit: int, before: str | None = None) -> list[SessionRow]:
        """The tenant's sessions newest first (ties by id), at most ``limit``: from the
        newest, or those listed after ``before``, one of the tenant's session ids."""
        if before is None:
            return self._select("WHERE tenant = ? ORDER BY created DESC, id DESC LIMIT ?",
                                (tenant, limit))
        return self._select("WHERE tenant = ? AND (created, id) < (SELECT created, id FROM "
                            "sessions WHERE id = ? AND tenant = ?) "
                            "ORDER BY created DESC, id DESC LIMIT ?",
                            (tenant, before, tenant, limit))

    def open_sessions(self) -> list[SessionRow]:
        return self._select("WHERE state = 'open' ORDER BY created", ())

    def _select(self, where: str, params: tuple[Any, ...]) -> list[SessionRow]:
        # fixed clauses from this module; values are always bound parameters
        rows = self._read(_SELECT_SESSIONS + where, params)
        return [SessionRow(r[0], r[1], r[2], r[3], r[4], r[5],
                           [(int(p), str(s)) for p, s in json.loads(r[6])], *r[7:])
                for r in rows]


class DaemonLock:
    """One daemon per state directory: an flock held for the daemon's lifetime."""

    def __init__(self, directory: Path) -> None:
        self._fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._fd)
            raise DaemonError(f"another rlmbox daemon uses the state directory {directory}",
                              type="Config") from exc

    def release(self) -> None:
        os.close(self._fd)
