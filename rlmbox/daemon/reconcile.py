"""Reconciliation at start: the daemon's answer to "a crash leaves no orphaned sandboxes".

Every session the database still calls ``open`` belonged to a daemon that stopped without
closing it. Each is marked ``lost`` and audited (``session.lost``, with what was found and
killed). Process sandboxes normally die with their daemon (``--die-with-parent``); any
survivor recorded by (pid, start time), and anything left in its cgroup, is killed. Docker
containers and E2B sandboxes carry owner tags, and each backend's ``collect_garbage``
removes those whose owner is gone. A session on a Ray cluster node (``rlmbox serve
--ray``) is killed, never adopted: its node actor belonged to the dead daemon (the
driver), so Ray killed it and its sandboxes with it; nothing of it runs here to kill.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from rlmbox.daemon.store import SessionRow, Store
from rlmbox.daemon.survivors import kill_cgroup, kill_recorded, remove_staging
from rlmbox.errors import RlmboxError
from rlmbox.runtime.events import AuditSink

log = logging.getLogger("rlmbox.daemon")
LOST_REASON = "the daemon that ran it stopped without closing it (crash or kill)"
LOST_ON_NODE = ("the daemon that ran it stopped without closing it (crash or kill); its "
                "node actor, owned by that daemon, died with it and took the sandbox along")


@dataclass(frozen=True)
class Reconciled:
    lost: list[str]
    killed_processes: int
    removed_containers: list[str]
    killed_e2b: list[str]


def reconcile(store: Store, audit: AuditSink) -> Reconciled:
    """Marks every leftover open session lost, kills what survives of it, audits each."""
    rows = store.open_sessions()
    killed_total = 0
    for row in rows:
        here = row.node is None
        killed, problems = _kill_process_sandbox(row) if here and row.backend == "process" \
            else (0, [])
        killed_total += killed
        reason = LOST_REASON if here else LOST_ON_NODE
        store.end_session(row.id, "lost", reason)
        audit.append("session.lost", session=row.id, tenant=row.tenant, reason=reason,
                     backend=row.backend, sandbox_id=row.sandbox_id, node=row.node,
                     survivors_killed=killed, cleanup_problems=problems, policy=row.policy,
                     policy_sha256=row.policy_sha256)
    local = [r for r in rows if r.node is None]
    containers = _collect_docker() if any(r.backend == "docker" for r in local) else []
    e2b = _collect_e2b() if any(r.backend == "e2b" for r in local) else []
    if rows or containers or e2b:
        audit.append("daemon.reconciled", lost=[r.id for r in rows],
                     survivors_killed=killed_total, containers_removed=containers,
                     e2b_sandboxes_killed=e2b)
    audit.sync()
    return Reconciled([r.id for r in rows], killed_total, containers, e2b)


def _kill_process_sandbox(row: SessionRow) -> tuple[int, list[str]]:
    killed = kill_recorded(row.sandbox_pids)
    problems: list[str] = []
    if row.sandbox_id:
        in_group, problems = kill_cgroup(row.sandbox_id)
        killed += in_group
        remove_staging(row.sandbox_id)
    return killed, problems


def _collect_docker() -> list[str]:
    """What ``rlmbox gc`` does: removes containers whose owning process is gone. An
    engine that cannot be reached is logged, not fatal: sessions are still marked lost."""
    try:
        from rlmbox.sandboxes.docker.backend import default_stage_root  # noqa: PLC0415 - docker only
        from rlmbox.sandboxes.docker.engine import connect  # noqa: PLC0415
        from rlmbox.sandboxes.docker.owner import collect_garbage  # noqa: PLC0415

        client = connect()
        try:
            return collect_garbage(client, default_stage_root())
        finally:
            client.close()
    except (ImportError, RlmboxError) as exc:
        log.warning("cannot collect orphaned containers: %s", exc)
        return []


def _collect_e2b() -> list[str]:
    """What ``rlmbox gc --backend e2b`` does: kills E2B sandboxes whose owning process is
    gone. E2B unreachable (or no key) is logged, not fatal; each sandbox's own timeout_s
    ends it anyway."""
    try:
        from rlmbox.sandboxes.e2b.backend import E2BBackend  # noqa: PLC0415 - e2b only

        return E2BBackend().collect_garbage()
    except (ImportError, RlmboxError) as exc:
        log.warning("cannot collect orphaned E2B sandboxes: %s", exc)
        return []
