"""The audit seam the runtime writes through (``rlmbox.audit.log.AuditLog`` fits it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class AuditSink(Protocol):
    """Appends events (buffered) and makes them durable on ``sync``; both fail closed."""

    def append(self, event: str, *, session: str | None = None, parent: str | None = None,
               depth: int = 0, tenant: str | None = None,
               bodies: Mapping[str, str | bytes] | None = None,
               **attributes: Any) -> dict[str, Any]: ...

    def sync(self) -> None: ...

    def add_secret(self, value: str) -> None: ...

    def close(self) -> None: ...
