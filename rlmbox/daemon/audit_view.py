"""A tenant's page of the daemon's audit log: its own events only, by sequence number.

The log is shared by every tenant (one hash chain); filtering happens here, on the
``tenant`` field each event carries. Reading scans the log from the start: fine for the
log sizes one daemon writes between rotations, and an index is a later optimisation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlmbox.audit.reader import iter_records
from rlmbox.errors import AuditError

MAX_PAGE = 1000


def audit_page(directory: Path, tenant: str, *, session: str | None, after_seq: int,
               limit: int) -> tuple[list[dict[str, Any]], int | None]:
    """Up to ``limit`` of ``tenant``'s events after ``after_seq`` (of ``session`` when
    given), and the ``after_seq`` of the next page (None when this page ends the log)."""
    events: list[dict[str, Any]] = []
    try:
        records = iter_records(directory)
        for record in records:
            seq = record.get("seq")
            if not isinstance(seq, int) or seq <= after_seq:
                continue
            if record.get("tenant") != tenant:
                continue
            if session is not None and record.get("session") != session:
                continue
            events.append(record)
            if len(events) > limit:
                break
    except AuditError:
        return [], None   # no log written yet
    if len(events) > limit:
        events = events[:limit]
        return events, int(events[-1]["seq"])
    return events, None
