"""What a node actor runs: one local ``Runtime`` per node, holding the node's sessions.

The actor is this class wrapped by ``ray.remote`` (``cluster/actors.py``), pinned to its
node. Everything that makes a session safe happens here, on the node, exactly as in an
embedded ``Runtime``: the jail, the warm pool, the policy, the ledger of each session tree
(an ``rlm_query`` child runs on its root's node, so the tree's ledger is one in-process
``Ledger``) and the node's own hash-chained audit log. The driver only forwards calls.

No sandbox outlives this process: the process backend's jails die with it
(``--die-with-parent``), and the actor dies with its driver (Ray's ownership).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rlmbox.audit.log import AuditLog
from rlmbox.errors import SessionClosed
from rlmbox.lm.base import LMProvider
from rlmbox.lm.spec import provider_from_spec
from rlmbox.policies.model import Policy
from rlmbox.runtime.results import ExecResult
from rlmbox.runtime.runtime import Runtime
from rlmbox.runtime.session import Session

#: How a node gets its LM provider: a spec (``anthropic:MODEL``; the key is read from the
#: node's own environment, so it never travels through Ray) or a picklable factory run on
#: the node. A provider object itself does not travel (it holds locks and HTTP clients).
LMSource = str | Callable[[], LMProvider]


def build_provider(source: LMSource | None) -> LMProvider | None:
    """The provider ``source`` names, built here on the node."""
    if source is None:
        return None
    return provider_from_spec(source) if isinstance(source, str) else source()


@dataclass(frozen=True)
class Placement:
    """Where a session landed: its node and its sandbox (the sandbox id names the jail's
    cgroup, so an operator can find its processes)."""

    session_id: str
    node_id: str
    backend: str
    sandbox_id: str


@dataclass(frozen=True)
class NodeHead:
    """A node log's head: its record ``seq`` had digest ``head``."""

    node_id: str
    seq: int
    head: str


class NodeHost:
    """The node's ``Runtime`` and its open sessions, addressed by session id."""

    def __init__(self, node_id: str, policy: str | Path | Policy, audit_dir: str,
                 lm: LMSource | None, rlm_lm: LMSource | None, pool_size: int,
                 tenant: str | None,
                 durability: Literal["cell", "session"]) -> None:
        self.node_id = node_id
        self._log = AuditLog(Path(audit_dir))
        self._runtime = Runtime(policy, lm=build_provider(lm), rlm_lm=build_provider(rlm_lm),
                                audit=self._log,
                                pool_size=pool_size, tenant=tenant, durability=durability)
        self._sessions: dict[str, Session] = {}

    def ready(self) -> str:
        """The node id, once the runtime is up (the driver waits on it)."""
        return self.node_id

    def open(self, context: Any, tools: Mapping[str, Callable[..., Any]] | None,
             backend: str | None) -> Placement:
        session = self._runtime.session(context=context, tools=tools, backend=backend)
        self._sessions[session.id] = session
        info = session.sandbox.info
        return Placement(session.id, self.node_id, info.backend, info.sandbox_id)

    def exec(self, session_id: str, code: str, timeout: float | None) -> ExecResult:
        return self._session(session_id).exec(code, timeout=timeout)

    def interrupt(self, session_id: str) -> bool:
        return self._session(session_id).interrupt(by="cluster driver")

    def close_session(self, session_id: str, reason: str) -> None:
        session = self._sessions.pop(session_id, None)
        if session is not None:
            session.close(reason)

    def head(self) -> NodeHead:
        """The head of this node's audit log, once durable (what the cluster anchors)."""
        seq, head = self._log.synced_head()
        return NodeHead(self.node_id, seq, head)

    def shutdown(self) -> NodeHead:
        """Closes every session and the runtime, then the log; returns its final head."""
        self._runtime.close()
        final = self.head()
        self._log.close()
        return final

    def _session(self, session_id: str) -> Session:
        session = self._sessions.get(session_id)
        if session is None:
            raise SessionClosed(f"session {session_id} is not open on node {self.node_id}")
        return session
