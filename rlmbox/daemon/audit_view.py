"""A tenant's page of the daemon's audit log: its own events only, by sequence number.

The log is shared by every tenant (one hash chain); the page comes from the index
(``audit_index.py``), so a call costs what was appended since the last one plus the page,
not a rescan of the log. A log the daemon cannot read is the server's fault, never the
caller's: it is a 500 ``AuditLogCorrupt`` saying what is wrong, never an empty page.
"""

from __future__ import annotations

from typing import Any

from rlmbox.daemon.audit_index import AuditIndex
from rlmbox.daemon.wire import AUDIT_LOG_CORRUPT
from rlmbox.errors import AuditError, DaemonError

MAX_PAGE = 1000


def audit_page(index: AuditIndex, tenant: str, *, session: str | None, after_seq: int,
               limit: int) -> tuple[list[dict[str, Any]], int | None]:
    """Up to ``limit`` of ``tenant``'s events after ``after_seq`` (of ``session`` when
    given), and the ``after_seq`` of the next page (None when this page ends the log)."""
    try:
        events, more = index.page(tenant, session=session, after_seq=after_seq, limit=limit)
    except AuditError as exc:
        raise DaemonError(f"the daemon's audit log cannot be read: {exc}", status=500,
                          type=AUDIT_LOG_CORRUPT) from exc
    return events, (int(events[-1]["seq"]) if more else None)
