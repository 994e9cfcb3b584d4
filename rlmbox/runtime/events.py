"""The audit seam the runtime writes through (``rlmbox.audit.log.AuditLog`` fits it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol


class AuditSink(Protocol):
    """Appends events (buffered) and makes them durable on ``sync``; both fail closed."""

    def append(self, event: str, *, session: str | None = None, parent: str | None = None,
               depth: int = 0, tenant: str | None = None,
               bodies: Mapping[str, str | bytes] | None = None,
               **attributes: Any) -> dict[str, Any]: ...

    def sync(self) -> None: ...

    def add_secret(self, value: str) -> None: ...

    def redact(self, text: str) -> str:
        """``text`` as the log would write it in an attribute (secrets and credential
        patterns replaced): for text cut before it is recorded."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class EventScope:
    """Who an event is about (a session's place in its tree) and the log it goes to.

    The session, its call dispatcher and the runtime all record events about the same
    session; each goes through one scope instead of repeating the four fields.
    """

    audit: AuditSink
    session: str
    parent: str | None = None
    depth: int = 0
    tenant: str | None = None

    def event(self, name: str, **attributes: Any) -> None:
        self.audit.append(name, session=self.session, parent=self.parent, depth=self.depth,
                          tenant=self.tenant, **attributes)

    def durable_event(self, name: str, **attributes: Any) -> None:
        """Records an event and waits until it is on disk: for a record that must exist
        before the action it announces (raises ``AuditWriteError`` otherwise)."""
        self.event(name, **attributes)
        self.audit.sync()
