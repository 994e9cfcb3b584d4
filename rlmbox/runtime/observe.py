"""The observer seam: what metrics and traces see of the engine.

Observers read the audit stream, so a metric or a span never says something the log does
not: every record the engine appends is handed to each observer as it was written (bodies
already replaced by their digests), and the log's sync is timed. Nothing here changes what
happens: an observer that raises is switched off for good, and the engine runs on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from rlmbox.errors import AuditWriteError
from rlmbox.runtime.events import AuditSink

log = logging.getLogger("rlmbox.observe")


class Observer(Protocol):
    """Sees each audit record as appended, and how each sync of the log went."""

    def record(self, record: Mapping[str, Any]) -> None: ...

    def audit_synced(self, seconds: float) -> None: ...

    def audit_failed(self) -> None: ...


class ObservedAudit:
    """An ``AuditSink`` that hands every record and sync to observers, then returns as
    the log did. The log's own errors pass through unchanged (fail closed)."""

    def __init__(self, sink: AuditSink, observers: Sequence[Observer]) -> None:
        self._sink = sink
        self._observers = list(observers)
        self._lock = threading.Lock()

    def append(self, event: str, *, session: str | None = None, parent: str | None = None,
               depth: int = 0, tenant: str | None = None,
               bodies: Mapping[str, str | bytes] | None = None,
               **attributes: Any) -> dict[str, Any]:
        try:
            record = self._sink.append(event, session=session, parent=parent, depth=depth,
                                       tenant=tenant, bodies=bodies, **attributes)
        except AuditWriteError:
            self._notify(lambda o: o.audit_failed())
            raise
        self._notify(lambda o: o.record(record))
        return record

    def sync(self) -> None:
        started = time.perf_counter()
        try:
            self._sink.sync()
        except AuditWriteError:
            self._notify(lambda o: o.audit_failed())
            raise
        elapsed = time.perf_counter() - started
        self._notify(lambda o: o.audit_synced(elapsed))

    def add_secret(self, value: str) -> None:
        self._sink.add_secret(value)

    def redact(self, text: str) -> str:
        return self._sink.redact(text)

    def close(self) -> None:
        self._sink.close()

    def _notify(self, call: Callable[[Observer], None]) -> None:
        for observer in list(self._observers):
            try:
                call(observer)
            except Exception:   # an observer's bug must never stop a cell or a host call
                log.exception("observer %r failed; it is switched off", observer)
                with self._lock:
                    if observer in self._observers:
                        self._observers.remove(observer)


def observed(sink: AuditSink, observers: Sequence[Observer]) -> AuditSink:
    """``sink`` itself when nobody observes (no cost), else an :class:`ObservedAudit`."""
    return ObservedAudit(sink, observers) if observers else sink
