"""The daemon's sessions on this machine: a local ``Runtime`` per tenant and policy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlmbox.daemon.survivors import process_identity
from rlmbox.lm.base import LMProvider
from rlmbox.policies.model import Policy
from rlmbox.runtime.events import AuditSink
from rlmbox.runtime.gate import SessionGate
from rlmbox.runtime.results import ExecResult
from rlmbox.runtime.runtime import Runtime
from rlmbox.runtime.session import OutputCallback, RootTextCallback, Session, SessionState

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry


@dataclass(frozen=True)
class SandboxHere:
    """A sandbox of this machine (``hosts.py`` ``SandboxIdentity``)."""

    backend: str
    sandbox_id: str | None
    pids: list[tuple[int, str]]
    node: None = None


class LocalSession:
    """A ``Session`` of this machine: everything the engine asks for, it can do."""

    def __init__(self, session: Session) -> None:
        self._session = session

    @property
    def id(self) -> str:
        return self._session.id

    @property
    def policy(self) -> Policy:
        return self._session.policy

    def identity(self) -> SandboxHere:
        info = self._session.sandbox.info
        return SandboxHere(info.backend, info.sandbox_id,
                           process_identity(self._session.sandbox))

    def exec(self, code: str, timeout: float | None, on_output: OutputCallback | None,
             on_root_text: RootTextCallback | None) -> ExecResult:
        return self._session.exec(code, timeout=timeout, on_output=on_output,
                                  on_root_text=on_root_text)

    def interrupt(self) -> bool:
        return self._session.interrupt(by="daemon client")

    def close(self, reason: str) -> None:
        self._session.close(reason)

    def ended(self) -> tuple[str, str] | None:
        if self._session.state is SessionState.DEAD:
            return "killed", self._session.death_reason or ""
        return None

    def files(self) -> Session:
        return self._session


class LocalHost:
    """One tenant's ``Runtime`` under one policy, writing to the daemon's audit log."""

    audit_set: Path | None = None

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def open(self, context: Any, backend: str | None) -> LocalSession:
        return LocalSession(self._runtime.session(context=context, backend=backend))

    def audit_bytes(self) -> int:
        return 0   # its events are in the daemon's log, counted by the audit index

    def close(self) -> None:
        self._runtime.close()


@dataclass
class LocalHosts:
    """Every tenant's runtimes share the daemon's LM provider, audit log and metrics."""

    lm: LMProvider
    audit: AuditSink
    pool_size: int = 0
    metrics: CollectorRegistry | None = None

    def host(self, tenant: str, policy_name: str, policy: Policy,
             gate: SessionGate) -> LocalHost:
        return LocalHost(Runtime(policy, lm=self.lm, audit=self.audit, tenant=tenant,
                                 pool_size=self.pool_size, metrics=self.metrics,
                                 session_gate=gate))

    def close(self) -> None:
        return None
