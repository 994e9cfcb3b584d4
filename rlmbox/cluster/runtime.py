"""RayRuntime: the ``Runtime`` API with each session placed on a Ray cluster node.

    from rlmbox.cluster import RayRuntime
    with RayRuntime(policy="default", address="auto") as rt:
        with rt.session(context=big_text) as s:
            print(s.exec("print(len(context))").stdout)

Ray places, admits and detects failures; rlmbox does what it does on one machine, on the
node (``cluster/node.py``). A session first reserves a slot (``cluster/admission.py``),
then opens on that node's actor, created on first use and pinned there. The driver keeps
the cluster's audit index (``cluster/audit_index.py``): where each session ran, each node
log's anchored head (at every session end and at close), and every loss.
"""

from __future__ import annotations

import contextlib
import enum
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeGuard

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from rlmbox.audit.collected import node_log_name
from rlmbox.cluster.admission import SLOT, Slot, reserve_slot
from rlmbox.cluster.audit_index import ClusterIndex
from rlmbox.cluster.driver_calls import DriverCalls
from rlmbox.cluster.driver_functions import DriverLMSpec, portable_signature
from rlmbox.cluster.node import LMSource, NodeHead, NodeHost, Placement
from rlmbox.cluster.remote_session import RemoteSession
from rlmbox.errors import RlmboxError, SessionClosed, SessionLost
from rlmbox.lm.base import LMProvider
from rlmbox.policies.model import Policy, load_policy
from rlmbox.runtime.contract import Subcall
from rlmbox.runtime.gate import SessionGate
from rlmbox.runtime.runtime import DEFAULT_POOL_SIZE, default_audit_dir

#: Concurrent calls a node actor serves (cells of different sessions run side by side).
NODE_CONCURRENCY = 256
NODE_START_TIMEOUT_S = 120.0
AUDIT_BYTES_TIMEOUT_S = 5.0


class RayRuntimeState(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


def _cause(exc: RayTaskError) -> Exception:
    """The node's own exception behind a failed actor call, as the caller should see it."""
    cause = exc.cause
    if isinstance(cause, RlmboxError | ValueError | TypeError):
        return cause
    return RlmboxError(f"the node failed: {type(cause).__name__}: {cause}")


def is_provider_object(lm: object) -> TypeGuard[LMProvider]:
    """A provider object (it has ``complete``), as against a spec or a factory. Many
    providers are callable too, so being callable does not make one a factory: taken for
    one, it would be pickled to every node with its key."""
    return lm is not None and not isinstance(lm, str | type) and callable(
        getattr(lm, "complete", None))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class RayRuntime:
    """Creates sessions on cluster nodes under one policy.

    Args:
        policy: as for ``Runtime``; every node runs it.
        address: the Ray cluster to join (``"auto"``, ``"ray://..."``, ``host:port``);
            ignored when this process already called ``ray.init``.
        lm, rlm_lm: where each node gets its LM provider (``cluster/node.py``
            ``LMSource``): a spec such as ``"anthropic:MODEL"``, built on the node with the
            key from the node's environment, or a picklable factory run on the node. ``lm``
            may also be a provider object: it stays in this process and makes every
            ``llm_query`` completion here, after the node decided and reserved it.
        subcall: a frontend's own recursive call (as ``Runtime(subcall=...)``), run in
            this process for each ``rlm_query`` the node admitted.
        audit_dir: the driver's index goes to ``audit_dir/index``; each node writes its own
            log to ``audit_dir/nodes/<node-id>`` on its own disk.
        pool_size: warm sandboxes per node.
        admission_timeout_s: how long ``session`` waits for a free slot before
            ``ClusterFull``.
        slot_resource: the custom resource one session holds; a separate name makes a
            separate pool of nodes (say ``rlmbox_slot_gvisor`` on the gVisor nodes).
        child_gate: a daemon's gate for the tenant: each ``rlm_query`` child's sandbox
            start and cell, on the node, holds one of the tenant's cell slots taken here
            (``cluster/child_slots.py``).
    """

    def __init__(self, policy: str | Path | Policy = "default", *, address: str | None = None,
                 lm: LMSource | LMProvider | None = None, rlm_lm: LMSource | None = None,
                 subcall: Subcall | None = None,
                 audit_dir: str | Path | None = None, pool_size: int = DEFAULT_POOL_SIZE,
                 tenant: str | None = None, durability: Literal["cell", "session"] = "cell",
                 admission_timeout_s: float = 60.0, slot_resource: str = SLOT,
                 child_gate: SessionGate | None = None) -> None:
        self.policy = load_policy(policy)   # refused here, not on every node
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            ray.init(address=address or "auto", log_to_driver=False)
        self.audit_dir = Path(audit_dir) if audit_dir is not None else default_audit_dir()
        self._driver_lm = lm if is_provider_object(lm) else None
        node_lm = lm if self._driver_lm is None else DriverLMSpec(
            self._driver_lm.name, self._driver_lm.model)
        self._subcall = subcall
        self._child_gate = child_gate
        self._node_args = (self.policy, node_lm, rlm_lm, pool_size, tenant, durability,
                           subcall is not None, child_gate is not None)
        self.tenant = tenant
        self.admission_timeout_s = admission_timeout_s
        self.slot_resource = slot_resource
        self._index = ClusterIndex(self.audit_dir, tenant)
        self._nodes: dict[str, Any] = {}   # node id -> actor handle
        self._sessions: dict[str, tuple[RemoteSession, Slot]] = {}
        self._lock = threading.Lock()
        self._node_lock = threading.Lock()
        self._state = RayRuntimeState.OPEN
        self._log_bytes: dict[str, int] = {}   # node id -> its log's bytes, last heard

    # --- sessions ------------------------------------------------------------------------

    def session(self, context: Any = None, *,
                tools: Mapping[str, Callable[..., Any]] | None = None,
                backend: str | None = None) -> RemoteSession:
        """Reserves a slot (waiting up to ``admission_timeout_s``), then starts the session
        on that slot's node, as ``Runtime.session`` does there. ``tools`` run in this
        process; the node decides, meters and records each call.

        Raises:
            ClusterFull: no slot came free in time.
            SessionLost: the chosen node died while the session started.
            IsolationUnavailable, PolicyDenied, SandboxUnavailable: as ``Runtime.session``.
        """
        if self._state is RayRuntimeState.CLOSED:
            raise SessionClosed("the runtime is closed")
        slot = reserve_slot(self.slot_resource, self.admission_timeout_s)
        try:
            node = self._node(slot.node_id)
            signatures = {name: portable_signature(fn) for name, fn in (tools or {}).items()}
            placement: Placement = self._get(slot.node_id, node.open.remote(
                context, signatures, backend))
        except BaseException:
            slot.release()
            raise
        session = RemoteSession(self, placement,
                                DriverCalls(tools or {}, self._driver_lm, self._subcall),
                                self._child_gate)
        with self._lock:
            self._sessions[session.id] = (session, slot)
        self._index.placed(placement)
        return session

    def node_call(self, session: RemoteSession, method: str, *args: Any) -> Any:
        """Runs ``method`` of the session's node actor; a dead node makes it lost."""
        node = self._nodes.get(session.node_id)
        if node is None:
            raise SessionLost(f"session {session.id} was lost: its node is gone")
        return self._get(session.node_id, getattr(node, method).remote(*args))

    def node_stream(self, session: RemoteSession, method: str, *args: Any) -> Iterator[Any]:
        """The items a streaming method of the session's node actor yields, each as it
        comes, with Ray's errors translated as ``node_call`` does."""
        node = self._nodes.get(session.node_id)
        if node is None:
            raise SessionLost(f"session {session.id} was lost: its node is gone")
        stream = getattr(node, method).options(num_returns="streaming").remote(*args)
        while True:
            try:
                ref = next(stream)
            except StopIteration:
                return
            except (RayTaskError, RayActorError) as exc:
                raise self._translated(session.node_id, exc) from exc
            yield self._get(session.node_id, ref)

    def end_session(self, session: RemoteSession, reason: str) -> None:
        """Closes the session on its node, anchors the node's log, frees the slot."""
        with self._lock:
            entry = self._sessions.pop(session.id, None)
        try:
            self._close_on_node(session, reason)
        except SessionLost as exc:
            # the node died before the close reached it (unnoticed while the session was
            # idle): the session was lost, and the loss is recorded like any other
            if session.lost_while_closing(str(exc)):
                self._index.lost(session.id, session.node_id, str(exc))
        finally:
            if entry is not None:
                entry[1].release()

    def _close_on_node(self, session: RemoteSession, reason: str) -> None:
        node = self._nodes.get(session.node_id)
        if node is None:   # lost while the session was closing, by another's call
            raise SessionLost(f"node {session.node_id[:12]} is gone")
        self._get(session.node_id, node.close_session.remote(session.id, reason))
        self._anchor(session.node_id)

    # --- nodes ---------------------------------------------------------------------------

    def _node(self, node_id: str) -> Any:
        """The node's actor, started (and recorded in the index) on first use."""
        with self._node_lock:
            node: Any = self._nodes.get(node_id)
            if node is not None:
                return node
            policy, lm, rlm_lm, pool_size, tenant, durability, subcall, gate = self._node_args
            node = ray.remote(NodeHost).options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
                num_cpus=0, max_concurrency=NODE_CONCURRENCY, max_restarts=0,
            ).remote(node_id, policy, str(self.audit_dir / node_log_name(node_id)), lm,
                     rlm_lm, pool_size, tenant, durability, subcall, gate)
            self._nodes[node_id] = node
            self._index.node_started(node_id)
        try:
            ray.get(node.ready.remote(), timeout=NODE_START_TIMEOUT_S)
        except (RayActorError, ray.exceptions.GetTimeoutError) as exc:
            # the actor could not start (a bad policy or LM source, an import error):
            # the node is fine, the request is not
            with self._node_lock:
                self._nodes.pop(node_id, None)
            ray.kill(node, no_restart=True)
            raise RlmboxError(f"the rlmbox node actor on node {node_id[:12]} could not "
                              f"start: {exc}") from exc
        return node

    def _get(self, node_id: str, ref: Any, *, timeout: float | None = None) -> Any:
        """``ray.get`` with Ray's errors translated: the node's own error is re-raised, a
        dead node actor makes every session on it lost."""
        try:
            return ray.get(ref, timeout=timeout)
        except (RayTaskError, RayActorError) as exc:
            raise self._translated(node_id, exc) from exc

    def _translated(self, node_id: str, exc: RayTaskError | RayActorError) -> Exception:
        """What the caller sees for a failed actor call: the node's own error, or, when
        the node actor died (or is unreachable, then killed), ``SessionLost``."""
        if isinstance(exc, RayTaskError):
            return _cause(exc)
        reason = f"node {node_id[:12]} died: {_first_line(exc)}"
        self._node_lost(node_id, reason)
        return SessionLost(reason)

    def _node_lost(self, node_id: str, reason: str) -> None:
        """Every session on the node ends lost, audited, its slot freed; the actor is
        killed in case only our connection to it broke (no sandbox may outlive it)."""
        with self._node_lock:
            node = self._nodes.pop(node_id, None)
        if node is not None:
            ray.kill(node, no_restart=True)
        with self._lock:
            lost = [(s, slot) for s, slot in self._sessions.values() if s.node_id == node_id]
            for session, _ in lost:
                self._sessions.pop(session.id, None)
        for session, slot in lost:
            if session.mark_lost(reason):
                self._index.lost(session.id, node_id, reason)
            slot.release()

    def audit_bytes(self) -> int:
        """Bytes of every node log this runtime wrote (a node that died, or that does not
        answer within ``AUDIT_BYTES_TIMEOUT_S``, counts with the last size it reported, so
        a hung node cannot stall the daemon's audit indexer)."""
        with self._node_lock:
            nodes = list(self._nodes.items())
        for node_id, node in nodes:
            with contextlib.suppress(SessionLost, GetTimeoutError):
                self._log_bytes[node_id] = self._get(node_id, node.log_bytes.remote(),
                                                     timeout=AUDIT_BYTES_TIMEOUT_S)
        return sum(self._log_bytes.values())

    def _anchor(self, node_id: str) -> None:
        node = self._nodes.get(node_id)
        if node is not None:
            head: NodeHead = self._get(node_id, node.head.remote())
            self._index.anchored(head)

    # --- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Closes every session, shuts each node actor down (anchoring its final head),
        then the index. Idempotent."""
        if self._state is RayRuntimeState.CLOSED:
            return
        self._state = RayRuntimeState.CLOSED
        with self._lock:
            sessions = [session for session, _ in self._sessions.values()]
        for session in sessions:
            session.close("runtime closed")
        with self._node_lock:
            nodes = list(self._nodes.items())
            self._nodes.clear()
        for node_id, node in nodes:
            try:
                head: NodeHead = self._get(node_id, node.shutdown.remote())
                self._index.anchored(head)
            except SessionLost:
                pass   # died at the end: its last anchor stands
            finally:
                ray.kill(node, no_restart=True)
        self._index.close()
        if self._owns_ray:
            ray.shutdown()

    def __enter__(self) -> RayRuntime:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
