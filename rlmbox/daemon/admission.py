"""Admission: the daemon's session and cell slots, globally and per tenant, and the
per-tenant audit quota.

Nothing here waits: a request over a limit is refused at once (a waiting request would
hold a connection and, worse, a thread), with a status that says whose limit it was —
429 for the tenant's own, 503 for the daemon's — and a ``Retry-After`` where waiting helps.
Sessions are counted by id through the Runtime's session gate, so ``rlm_query`` children
count, and a session ended twice is released once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager

from rlmbox.daemon.child_cells import ChildCells
from rlmbox.daemon.limits import DaemonLimits
from rlmbox.errors import DaemonError

TOO_MANY_SESSIONS = "TooManySessions"
TOO_MANY_CELLS = "TooManyCells"
DAEMON_BUSY = "DaemonBusy"
AUDIT_QUOTA_EXCEEDED = "AuditQuotaExceeded"
CELL_RETRY_S = 1.0


class Slot:
    """One admitted cell; ``release`` is idempotent (a cancelled request and the thread
    that ran its cell may both release it)."""

    def __init__(self, release: Callable[[], None]) -> None:
        self._release: Callable[[], None] | None = release
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            release, self._release = self._release, None
        if release is not None:
            release()


class Admission:
    """Thread-safe counters of open sessions and running cells."""

    def __init__(self, limits: DaemonLimits, audit_bytes: Callable[[str], int]) -> None:
        self.limits = limits
        self._audit_bytes = audit_bytes
        self._lock = threading.Lock()
        self._sessions: dict[str, set[str]] = {}   # tenant -> ids, children included
        self._session_count = 0
        self._cells: dict[str, int] = {}
        self._cell_count = 0

    # --- sessions (through the Runtime's gate) ----------------------------------------

    def enter_session(self, tenant: str, session_id: str, parent: str | None) -> None:
        """Admits a session or raises; a child is refused like a root (its ``rlm_query``
        call fails inside the cell)."""
        what = "child sessions (rlm_query)" if parent is not None else "sessions"
        with self._lock:
            mine = self._sessions.setdefault(tenant, set())
            if len(mine) >= self.limits.sessions_per_tenant:
                raise DaemonError(
                    f"tenant {tenant!r} has {len(mine)} open sessions, children included, "
                    f"the most this daemon allows ({self.limits.sessions_per_tenant}); "
                    f"no more {what} until one closes", status=429, type=TOO_MANY_SESSIONS)
            if self._session_count >= self.limits.sessions:
                raise DaemonError(
                    f"the daemon holds its most open sessions ({self.limits.sessions}); "
                    f"no more {what} for now", status=503, type=DAEMON_BUSY,
                    retry_after_s=CELL_RETRY_S)
            mine.add(session_id)
            self._session_count += 1

    def leave_session(self, tenant: str, session_id: str) -> None:
        with self._lock:
            mine = self._sessions.get(tenant)
            if mine is not None and session_id in mine:
                mine.remove(session_id)
                self._session_count -= 1

    def open_sessions(self, tenant: str) -> int:
        with self._lock:
            return len(self._sessions.get(tenant, ()))

    # --- cells ------------------------------------------------------------------------

    def take_cell(self, tenant: str) -> Slot:
        """A cell slot (also taken while a session's sandbox starts), or a refusal."""
        self.check_audit_quota(tenant)
        with self._lock:
            running = self._cells.get(tenant, 0)
            if running >= self.limits.cells_per_tenant:
                raise DaemonError(
                    f"tenant {tenant!r} runs {running} cells or session starts at once, the "
                    f"most this daemon allows ({self.limits.cells_per_tenant})", status=429,
                    type=TOO_MANY_CELLS, retry_after_s=CELL_RETRY_S)
            if self._cell_count >= self.limits.cells:
                raise DaemonError(
                    f"the daemon runs its most cells at once ({self.limits.cells})",
                    status=503, type=DAEMON_BUSY, retry_after_s=CELL_RETRY_S)
            self._cells[tenant] = running + 1
            self._cell_count += 1
        return Slot(lambda: self._end_cell(tenant))

    def try_take_cell(self, tenant: str) -> Slot | None:
        """A cell slot if one is free under both caps, else None (never a refusal: a
        child waits for its parent's lane instead, ``daemon/child_cells.py``)."""
        with self._lock:
            running = self._cells.get(tenant, 0)
            if running >= self.limits.cells_per_tenant or self._cell_count >= self.limits.cells:
                return None
            self._cells[tenant] = running + 1
            self._cell_count += 1
        return Slot(lambda: self._end_cell(tenant))

    def _end_cell(self, tenant: str) -> None:
        with self._lock:
            self._cells[tenant] -= 1
            self._cell_count -= 1

    def check_audit_quota(self, tenant: str) -> None:
        """Refuses new work of a tenant whose records and bodies in the log reach its
        quota; what already runs finishes (its events are bounded by the policy)."""
        used = self._audit_bytes(tenant)
        if used >= self.limits.audit_bytes_per_tenant:
            raise DaemonError(
                f"tenant {tenant!r} has written {used} bytes to the audit log, its quota "
                f"({self.limits.audit_bytes_per_tenant}); the operator must raise it",
                status=403, type=AUDIT_QUOTA_EXCEEDED)


class TenantGate:
    """The Runtime's ``SessionGate`` for one tenant."""

    def __init__(self, admission: Admission, tenant: str) -> None:
        self._admission = admission
        self._tenant = tenant
        self._children = ChildCells(lambda: admission.try_take_cell(tenant))

    def enter(self, session_id: str, parent: str | None) -> None:
        self._admission.enter_session(self._tenant, session_id, parent)

    def leave(self, session_id: str) -> None:
        self._admission.leave_session(self._tenant, session_id)

    def child_work(self, parent: str) -> AbstractContextManager[None]:
        return self._children.slot(parent)
