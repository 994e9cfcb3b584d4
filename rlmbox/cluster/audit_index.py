"""The driver's index of the cluster's audit logs: which node logs exist, their anchored
heads, where each session ran and which sessions were lost.

It is an ordinary hash-chained ``AuditLog`` (``<audit_dir>/index``), so it verifies like
any log; ``rlmbox audit verify --cluster`` reads it to check every node log it names
against the heads it anchored (``audit/collected.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlmbox.audit.collected import INDEX, node_log_name
from rlmbox.audit.log import AuditLog
from rlmbox.cluster.node import NodeHead, Placement


class ClusterIndex:
    """Appends the cluster's own events; each is durable before the call returns."""

    def __init__(self, audit_dir: Path, tenant: str | None) -> None:
        self._log = AuditLog(Path(audit_dir) / INDEX)
        self._tenant = tenant

    def node_started(self, node_id: str) -> None:
        self._durable("cluster.node", node=node_id, log=node_log_name(node_id))

    def anchored(self, head: NodeHead) -> None:
        self._durable("cluster.anchor", node=head.node_id, log=node_log_name(head.node_id),
                      anchored_seq=head.seq, anchored_head=head.head)

    def placed(self, placement: Placement) -> None:
        self._durable("session.place", session=placement.session_id,
                      node=placement.node_id, sandbox_id=placement.sandbox_id,
                      backend=placement.backend)

    def lost(self, session_id: str, node_id: str, reason: str) -> None:
        self._durable("session.lost", session=session_id, node=node_id, reason=reason,
                      severity="ERROR")

    def close(self) -> None:
        self._log.close()

    def _durable(self, event: str, *, session: str | None = None, **attrs: Any) -> None:
        self._log.append(event, session=session, tenant=self._tenant, **attrs)
        self._log.sync()
