"""The engine's seam: where the daemon's sessions run.

The engine drives a ``SessionHost`` per tenant and policy: today either a local
``Runtime`` (``local_host.py``) or a Ray cluster (``rlmbox.cluster.daemon_host``, wired by
``rlmbox serve --ray``). Both admit sessions through the tenant's gate (the daemon's
session caps; on a cluster the root sessions) and give back ``HostedSession`` objects:
what the engine needs of a live session, including what a host cannot do, refused by name
(``NotOnCluster``, answered 501) rather than done some other way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from rlmbox.policies.model import Policy
from rlmbox.runtime.contract import SessionLike
from rlmbox.runtime.gate import SessionGate
from rlmbox.runtime.results import ExecResult
from rlmbox.runtime.session import OutputCallback, RootTextCallback


class SandboxIdentity(Protocol):
    """What reconciliation needs to find a session's sandbox after a crash: its backend
    and id, ``(pid, start time)`` of its host processes when they run on this machine,
    and the cluster node it runs on (then nothing of it runs here)."""

    @property
    def backend(self) -> str: ...

    @property
    def sandbox_id(self) -> str | None: ...

    @property
    def pids(self) -> list[tuple[int, str]]: ...

    @property
    def node(self) -> str | None: ...


class HostedSession(Protocol):
    """A live session as the engine uses it."""

    @property
    def id(self) -> str: ...

    @property
    def policy(self) -> Policy: ...

    def identity(self) -> SandboxIdentity: ...

    def exec(self, code: str, timeout: float | None, on_output: OutputCallback | None,
             on_root_text: RootTextCallback | None) -> ExecResult:
        """Raises ``NotOnCluster`` for a callback the host cannot serve."""

    def interrupt(self) -> bool: ...

    def close(self, reason: str) -> None: ...

    def ended(self) -> tuple[str, str] | None:
        """``(state, reason)`` once the session died on its own (``killed``, ``lost``)."""

    def files(self) -> SessionLike:
        """The session for a file transfer."""


class SessionHost(Protocol):
    """Where one tenant's sessions under one policy run."""

    #: a cluster host's audit set (index and node logs) for ``audit verify --cluster``
    audit_set: Path | None

    def open(self, context: Any, backend: str | None) -> HostedSession: ...

    def audit_bytes(self) -> int:
        """Bytes of audit records its sessions wrote outside the daemon's log (0 when they
        go to it); may block, so it is measured off the event loop."""

    def close(self) -> None: ...


class Hosts(Protocol):
    """Makes the engine's hosts; ``close`` after every host is closed."""

    def host(self, tenant: str, policy_name: str, policy: Policy,
             gate: SessionGate) -> SessionHost: ...

    def close(self) -> None: ...
