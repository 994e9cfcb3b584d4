"""Refused requests go to the audit log, at a bounded rate.

A tenant flooding the daemon must not flood the log it shares with everyone: per tenant
(and once for all unauthenticated callers) at most one ``request.refused`` event per
interval is written, carrying how many refusals it stands for. Events name the tenant,
route and error type, never a token or a body.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from rlmbox.errors import RlmboxError
from rlmbox.runtime.events import AuditSink

log = logging.getLogger("rlmbox.daemon")
INTERVAL_S = 1.0


@dataclass
class _Pending:
    last_written: float
    suppressed: int = 0


class RefusalRecorder:
    def __init__(self, audit: AuditSink, interval_s: float = INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._audit = audit
        self._interval = interval_s
        self._clock = clock
        self._pending: dict[str | None, _Pending] = {}
        self._lock = threading.Lock()

    def record(self, tenant: str | None, method: str, route: str, status: int,
               kind: str) -> None:
        """Audits this refusal, or counts it into the next event of its tenant."""
        now = self._clock()
        with self._lock:
            pending = self._pending.get(tenant)
            if pending is not None and now - pending.last_written < self._interval:
                pending.suppressed += 1
                return
            covered = 1 + (pending.suppressed if pending is not None else 0)
            self._pending[tenant] = _Pending(now)
        try:
            self._audit.append("request.refused", tenant=tenant, method=method, route=route,
                               status=status, error=kind, refusals=covered)
        except RlmboxError as exc:   # a failed log fails the work it guards, not this
            log.warning("the audit log refused request.refused: %s", exc)
