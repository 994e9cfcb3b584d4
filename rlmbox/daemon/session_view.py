"""GET /v1/sessions/{id}/view: the trajectory viewer's report of a tenant's own session.

The page is rendered from the daemon's one audit log, with the tenant's records only
(``render_tenant_session``); another tenant's session id is the same 404 as an unknown
one. A session that ran on a Ray cluster node (``rlmbox serve --ray``) is refused with
``NotOnCluster`` (501): its events are in its node's log, not the daemon's, so a report
from the daemon's log would show nothing of it. The answer carries the report's own
Content-Security-Policy as a header too, so a browser runs no script from it whatever a
sandbox printed.
"""

from __future__ import annotations

from pathlib import Path

from rlmbox.audit.view.page import CSP
from rlmbox.audit.view.report import render_tenant_session
from rlmbox.daemon.wire import AUDIT_LOG_CORRUPT
from rlmbox.errors import AuditError, DaemonError

CLUSTER_VIEW = "the viewer report of a session on a Ray cluster is not served by the " \
    "daemon yet: its events are in its node's log (the daemon's log names the audit set " \
    "in a daemon.cluster_audit event); render it there with `rlmbox audit view DIR " \
    "--session ID`"

VIEW_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


def session_report(audit_dir: Path, tenant: str, session_id: str) -> str:
    """The HTML report of ``tenant``'s session ``session_id`` (the caller checked that the
    store knows it as the tenant's). A log that cannot show it is the server's fault."""
    try:
        return render_tenant_session(audit_dir, session_id, tenant)
    except AuditError as exc:
        raise DaemonError(f"the daemon's audit log cannot show session {session_id!r}: "
                          f"{exc}", status=500, type=AUDIT_LOG_CORRUPT) from exc
