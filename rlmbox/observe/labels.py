"""Label values drawn from audit records, each from a small fixed set.

A label value must never carry tenant data or anything model code chose freely (that
would leak it to a metrics scraper and let a cell blow up the series count), so every
free-form string is mapped to a named class here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

UNKNOWN_FUNCTION = "unknown"
SESSION_END_STATUSES = {"closed": "closed", "exception": "exception",
                        "runtime closed": "runtime_closed", "replaced": "replaced",
                        "daemon shutdown": "daemon_shutdown"}


def text(record: Mapping[str, Any], key: str) -> str:
    """A string attribute of ``record``, or ``""``."""
    value = record.get(key)
    return value if isinstance(value, str) else ""


def tenant(record: Mapping[str, Any]) -> str:
    """The tenant's name (operator-chosen; the only tenant data a label may hold)."""
    return text(record, "tenant")


def end_status(record: Mapping[str, Any]) -> str:
    """How a session ended: ``killed`` when its sandbox died, else the closing reason
    among the engine's own; anything else (a daemon's long sentence) is ``other``."""
    if record.get("death_reason"):
        return "killed"
    return SESSION_END_STATUSES.get(text(record, "reason"), "other")


def kill_reason(reason: str) -> str:
    """Why a sandbox was killed, from the host-measured reason the session recorded."""
    lowered = reason.lower()
    if "memory" in lowered or "oom" in lowered:
        return "oom"
    if "pids" in lowered:
        return "pids"
    if "interrupt" in lowered or "wall time" in lowered:
        return "timeout"
    if "protocol violation" in lowered:
        return "protocol"
    if "host calls" in lowered:
        return "call_flood"
    return "other"


def is_kill(record: Mapping[str, Any]) -> bool:
    """A sandbox was killed: the session's ``sandbox.killed`` record, or the
    ``limit.exceeded`` one it writes instead when the reason names a limit (a budget or
    quota record names its ``budget`` or ``limit`` and kills nothing)."""
    if record.get("event") not in ("sandbox.killed", "limit.exceeded"):
        return False
    return "reason" in record and "cell" in record and "limit" not in record \
        and "budget" not in record
