"""The daemon's sessions on a Ray cluster (``rlmbox serve --ray ADDRESS``).

The daemon joins the cluster as its driver and keeps one ``RayRuntime`` per tenant and
policy (``tenant=`` set, so every node event names the tenant), each with its own audit
set (``<root>/<digest of tenant and policy>/``: the index and the node logs). This module
is the daemon engine's session host for it (``rlmbox/daemon/hosts.py``: the same shape,
matched structurally, since the cluster layer does not import the daemon's).

What the daemon's gates need happens here, on the driver: a root session is admitted
through the tenant's gate before its slot is reserved, and left when it ends. Its
``rlm_query`` children run on their root's node and are bounded there by the policy's
recursion limits, not by the daemon's session caps. Output streams and files move through
the node (``RemoteSession``); what a cluster session cannot do yet (stream its children's
root-model text) raises ``NotOnCluster``: refused, never run locally.

The node actors belong to this driver: when the daemon dies, Ray kills them, and their
sandboxes die with them.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from rlmbox.cluster.admission import SLOT
from rlmbox.cluster.node import LMSource
from rlmbox.cluster.remote_session import RemoteSession, RemoteSessionState
from rlmbox.cluster.runtime import RayRuntime
from rlmbox.errors import NotOnCluster
from rlmbox.policies.model import Policy
from rlmbox.runtime.contract import SessionLike
from rlmbox.runtime.gate import SessionGate
from rlmbox.runtime.results import ExecResult
from rlmbox.runtime.session import OutputCallback, RootTextCallback

ROOT_TEXT = "streaming the root-model text of rlm_query children (root_text: true) is " \
            "not available for sessions on a Ray cluster yet; ask without root_text"


@dataclass(frozen=True)
class SandboxOnNode:
    """A cluster session's sandbox for the daemon's store (``daemon/hosts.py``
    ``SandboxIdentity``): no process of it runs on the daemon's machine."""

    backend: str
    sandbox_id: str | None
    pids: list[tuple[int, str]]
    node: str | None


class ClusterSession:
    """A ``RemoteSession`` as the daemon's engine drives it."""

    def __init__(self, remote: RemoteSession, policy: Policy,
                 leave: Callable[[], None]) -> None:
        self._remote = remote
        self._policy = policy
        self._leave = leave   # frees the tenant's gate; idempotent

    @property
    def id(self) -> str:
        return self._remote.id

    @property
    def policy(self) -> Policy:
        return self._policy

    def identity(self) -> SandboxOnNode:
        placement = self._remote.placement
        return SandboxOnNode(placement.backend, placement.sandbox_id, [], placement.node_id)

    def exec(self, code: str, timeout: float | None, on_output: OutputCallback | None,
             on_root_text: RootTextCallback | None) -> ExecResult:
        if on_root_text is not None:
            raise NotOnCluster(ROOT_TEXT)
        return self._remote.exec(code, timeout=timeout, on_output=on_output)

    def interrupt(self) -> bool:
        return self._remote.interrupt()

    def close(self, reason: str) -> None:
        try:
            self._remote.close(reason)
        finally:
            self._leave()

    def ended(self) -> tuple[str, str] | None:
        state = self._remote.state
        if state is RemoteSessionState.DEAD:
            return "killed", self._remote.death_reason or ""
        if state is RemoteSessionState.LOST:
            self._leave()   # its sandbox died with its node: it holds no slot of ours
            return "lost", self._remote.death_reason or ""
        return None

    def files(self) -> SessionLike:
        return self._remote


class _Admitted:
    """The gate's admission of one root session, left once."""

    def __init__(self, gate: SessionGate) -> None:
        self._gate = gate
        self.ticket = f"ray-{secrets.token_hex(8)}"
        self._left = False
        gate.enter(self.ticket, None)

    def __call__(self) -> None:
        if not self._left:
            self._left = True
            self._gate.leave(self.ticket)


class ClusterHost:
    """One tenant's ``RayRuntime`` under one policy."""

    def __init__(self, runtime: RayRuntime, gate: SessionGate) -> None:
        self._runtime = runtime
        self._gate = gate
        self.audit_set: Path | None = runtime.audit_dir

    def open(self, context: Any, backend: str | None) -> ClusterSession:
        admitted = _Admitted(self._gate)
        try:
            remote = self._runtime.session(context=context, backend=backend)
        except BaseException:
            admitted()
            raise
        return ClusterSession(remote, self._runtime.policy, admitted)

    def audit_bytes(self) -> int:
        """The node logs' bytes: every event in them is this tenant's."""
        return self._runtime.audit_bytes()

    def close(self) -> None:
        self._runtime.close()


def audit_set_name(tenant: str, policy_name: str) -> str:
    """A directory name for any tenant and policy name (the daemon's log maps it back)."""
    return hashlib.sha256(f"{tenant}\0{policy_name}".encode()).hexdigest()[:16]


class ClusterHosts:
    """Joins the cluster (bound to nothing of its own: no dashboard) and makes hosts.

    Args:
        address: the cluster (``host:port`` of its GCS, ``auto``, ``ray://...``).
        namespace: the Ray namespace of this daemon's actors.
        audit_root: where each tenant and policy's audit set goes.
        lm: each node's LM provider (``cluster/node.py`` ``LMSource``).
    """

    def __init__(self, address: str, *, audit_root: Path, lm: LMSource | None,
                 namespace: str = "rlmbox", pool_size: int = 0,
                 admission_timeout_s: float = 60.0, slot_resource: str = SLOT) -> None:
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            ray.init(address=address, namespace=namespace, include_dashboard=False,
                     log_to_driver=False)
        self.audit_root = audit_root
        self._lm = lm
        self._pool_size = pool_size
        self._admission_timeout_s = admission_timeout_s
        self._slot_resource = slot_resource

    def host(self, tenant: str, policy_name: str, policy: Policy,
             gate: SessionGate) -> ClusterHost:
        runtime = RayRuntime(policy, lm=self._lm, pool_size=self._pool_size, tenant=tenant,
                             audit_dir=self.audit_root / audit_set_name(tenant, policy_name),
                             admission_timeout_s=self._admission_timeout_s,
                             slot_resource=self._slot_resource, child_gate=gate)
        return ClusterHost(runtime, gate)

    def close(self) -> None:
        """Leaves the cluster (the hosts are closed first, by the engine)."""
        if self._owns_ray:
            ray.shutdown()
