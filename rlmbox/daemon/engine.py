"""The daemon's engine room: a session host per tenant and policy, and the live sessions.

Each tenant gets its own host per operator-loaded policy (``hosts.py``: a local Runtime
with ``tenant=`` set, so every audit event names it, writing to the daemon's one audit
log; or a Ray cluster, whose nodes keep their own logs). Session lookups
always go through the tenant: another tenant's session id finds nothing. Every session
is admitted through the host's session gate by the daemon's ``Admission`` (its session
caps): on this machine ``rlm_query`` children too, on a cluster the root sessions (their
children run on the root's node). Methods here
block (they start sandboxes and run cells) and are called from the server's thread pool.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from rlmbox.daemon.admission import Admission, TenantGate
from rlmbox.daemon.hosts import HostedSession, Hosts, SessionHost
from rlmbox.daemon.store import SessionRow, Store
from rlmbox.daemon.wire import BACKEND_NOT_ALLOWED, INVALID_REQUEST, NOT_FOUND, UNKNOWN_POLICY
from rlmbox.errors import DaemonError, RlmboxError, SessionClosed, SessionKilled
from rlmbox.policies.model import Policy
from rlmbox.runtime.contract import SessionLike
from rlmbox.runtime.events import AuditSink
from rlmbox.runtime.results import ExecResult
from rlmbox.runtime.session import OutputCallback, RootTextCallback, check_cell_timeout

T = TypeVar("T")

log = logging.getLogger("rlmbox.daemon")
REAPED = "the session's wall time (session_timeout_s) is spent"


@dataclass
class LiveSession:
    session: HostedSession
    tenant: str
    exec_lock: threading.Lock = field(default_factory=threading.Lock)
    started: float = field(default_factory=time.monotonic)

    def expired(self, now: float) -> bool:
        """Past the policy's session wall time: it can run nothing more, so it only
        holds a sandbox."""
        return now - self.started >= self.session.policy.limits.session_timeout_s


def not_found(session_id: str) -> DaemonError:
    # the same answer whether the id is unknown or another tenant's: no existence oracle
    return DaemonError(f"no session {session_id!r}", status=404, type=NOT_FOUND)


class Engine:
    """Runtimes and live sessions of every tenant; thread-safe."""

    def __init__(self, policies: dict[str, Policy], *, hosts: Hosts, audit: AuditSink,
                 store: Store, admission: Admission) -> None:
        if not policies:
            raise DaemonError("the daemon needs at least one policy", type="Config")
        self.policies = policies
        self.default_policy = next(iter(policies))
        self._hosts = hosts
        self._audit = audit
        self._store = store
        self.admission = admission
        self._runtimes: dict[tuple[str, str], SessionHost] = {}
        self._hosted_bytes: dict[str, int] = {}   # tenant -> audit bytes outside our log
        self._live: dict[str, LiveSession] = {}
        self._lock = threading.Lock()
        self._closed = False

    def policy(self, name: str | None) -> tuple[str, Policy]:
        name = name or self.default_policy
        if name not in self.policies:
            raise DaemonError(f"unknown policy {name!r}; this daemon offers: "
                              f"{', '.join(sorted(self.policies))}", status=400,
                              type=UNKNOWN_POLICY)
        return name, self.policies[name]

    def _runtime(self, tenant: str, policy_name: str) -> SessionHost:
        with self._lock:
            if self._closed:
                raise SessionClosed("the daemon is shutting down")
            key = (tenant, policy_name)
            if key in self._runtimes:
                return self._runtimes[key]
            host = self._hosts.host(tenant, policy_name, self.policies[policy_name],
                                    TenantGate(self.admission, tenant))
            self._runtimes[key] = host
        if host.audit_set is not None:   # where its node logs are indexed, in our log
            self._audit.append("daemon.cluster_audit", tenant=tenant, policy=policy_name,
                               audit_set=str(host.audit_set))
            self._audit.sync()
        return host

    def hosted_audit_bytes(self, tenant: str) -> int:
        """What the tenant's sessions wrote to logs other than the daemon's (a cluster's
        node logs), as last measured; never blocks."""
        return self._hosted_bytes.get(tenant, 0)

    # --- blocking operations (thread pool) ------------------------------------------

    def measure_audit_bytes(self) -> None:
        """Measures ``hosted_audit_bytes`` of every tenant (asks each cluster node)."""
        with self._lock:
            hosts = list(self._runtimes.items())
        totals: dict[str, int] = {}
        for (tenant, _), host in hosts:
            try:
                totals[tenant] = totals.get(tenant, 0) + host.audit_bytes()
            except RlmboxError as exc:   # the last measure stands
                log.warning("measuring tenant %r's audit bytes: %s", tenant, exc)
                totals[tenant] = max(totals.get(tenant, 0), self._hosted_bytes.get(tenant, 0))
        self._hosted_bytes = totals

    def create(self, tenant: str, policy: str | None, backend: str | None,
               context: Any) -> SessionRow:
        name, chosen = self.policy(policy)
        self._check_backend(tenant, name, chosen, backend)
        runtime = self._runtime(tenant, name)
        try:
            session = runtime.open(context, backend)   # the gate admits it
        except UnicodeEncodeError as exc:   # backstop: validation refuses these first
            raise DaemonError("the context cannot be encoded as UTF-8", status=400,
                              type=INVALID_REQUEST) from exc
        identity = session.identity()
        row = SessionRow(id=session.id, tenant=tenant, policy=name,
                         policy_sha256=chosen.sha256, backend=identity.backend,
                         sandbox_id=identity.sandbox_id, sandbox_pids=identity.pids,
                         state="open", created=time.time(), closed=None, reason=None,
                         node=identity.node)
        try:
            self._store.add_session(row)   # durable before the caller hears of it
        except BaseException:
            session.close("the daemon could not record the session")
            raise
        with self._lock:
            self._live[session.id] = LiveSession(session, tenant)
        return row

    def _check_backend(self, tenant: str, name: str, policy: Policy,
                       backend: str | None) -> None:
        """The backend is the operator's choice: a client may name one only among those
        the policy allows (``isolation.allowed_backends``, default its own)."""
        allowed = policy.isolation.permitted_backends
        if backend is None or backend in allowed:
            return
        self._audit.append("session.refused", tenant=tenant, policy=name,
                           policy_sha256=policy.sha256, backend=backend,
                           allowed=sorted(allowed), reason="backend_not_allowed")
        self._audit.sync()
        raise DaemonError(f"backend {backend!r} is not allowed by policy {name!r}; it "
                          f"allows: {', '.join(sorted(allowed))}", status=403,
                          type=BACKEND_NOT_ALLOWED)

    def exec(self, tenant: str, session_id: str, code: str, timeout: float | None,
             on_output: OutputCallback | None = None,
             on_root_text: RootTextCallback | None = None) -> ExecResult:
        live = self.live(tenant, session_id)
        try:
            check_cell_timeout(live.session.policy, timeout)
        except (TypeError, ValueError) as exc:   # over the policy's limit: the caller's fault
            raise DaemonError(str(exc), status=400, type=INVALID_REQUEST) from exc
        with self._turn(live, session_id):
            return live.session.exec(code, timeout, on_output, on_root_text)

    @contextlib.contextmanager
    def _turn(self, live: LiveSession, session_id: str) -> Iterator[None]:
        """One use of a session at a time (two execs, or a transfer, run one after the
        other); a use that killed the sandbox (a cell, a failed audit write, a broken
        file transfer, a lost cluster node) is recorded in the store."""
        try:
            with live.exec_lock:
                yield
        finally:
            ended = live.session.ended()
            if ended is not None:
                self._store.end_session(session_id, *ended)

    def files(self, tenant: str, session_id: str, transfer: Callable[[SessionLike], T]) -> T:
        """Runs one file transfer on the tenant's session, after its running cell."""
        live = self.live(tenant, session_id)
        with self._turn(live, session_id):
            return transfer(live.session.files())

    def interrupt(self, tenant: str, session_id: str) -> bool:
        """Interrupts the session's running cell; False when none runs. Never waits for
        the exec lock: the cell holds it."""
        return self.live(tenant, session_id).session.interrupt()

    def close(self, tenant: str, session_id: str, reason: str = "closed") -> None:
        row = self._store.session(session_id, tenant)
        if row is None:
            raise not_found(session_id)
        with self._lock:
            live = self._live.pop(session_id, None)
        try:
            if live is not None:
                live.session.close(reason)   # an audit failure still reaches the caller
        finally:
            self._store.end_session(session_id, "closed", reason)

    def live(self, tenant: str, session_id: str) -> LiveSession:
        """The tenant's live session, or the error its recorded state calls for."""
        with self._lock:
            live = self._live.get(session_id)
        if live is not None and live.tenant == tenant:
            return live
        row = self._store.session(session_id, tenant)
        if row is None:
            raise not_found(session_id)
        if row.state == "killed":
            raise SessionKilled(f"session {session_id} is dead: {row.reason}")
        raise SessionClosed(f"session {session_id} is {row.state}: {row.reason}")

    def reap(self) -> list[str]:
        """Closes every live session past its wall time (a client that never says
        DELETE would otherwise hold its sandbox until the daemon stops)."""
        now = time.monotonic()
        with self._lock:
            expired = [(sid, live) for sid, live in self._live.items() if live.expired(now)]
            for sid, _ in expired:
                del self._live[sid]
        for sid, live in expired:
            self._close_quietly(sid, live, REAPED)
        return [sid for sid, _ in expired]

    def _close_quietly(self, session_id: str, live: LiveSession, reason: str) -> None:
        """Closes one session on the daemon's own initiative: a failure (the audit log
        refusing its end event) is logged and must not stop the others from closing.
        The sandbox is killed before the event is written, so it is gone either way."""
        try:
            live.session.close(reason)
        except RlmboxError as exc:
            log.warning("closing session %s: %s", session_id, exc)
        finally:
            self._store.end_session(session_id, "closed", reason)

    def shutdown(self, reason: str = "daemon shutdown") -> None:
        """Closes every live session (killing its sandbox), every host, then the hosts."""
        with self._lock:
            self._closed = True
            live = list(self._live.items())
            self._live.clear()
            runtimes = list(self._runtimes.values())
        for session_id, item in live:
            self._close_quietly(session_id, item, reason)
        for runtime in runtimes:
            try:
                runtime.close()
            except RlmboxError as exc:
                log.warning("closing a runtime: %s", exc)
        try:
            self._hosts.close()
        except RlmboxError as exc:
            log.warning("closing the session hosts: %s", exc)
