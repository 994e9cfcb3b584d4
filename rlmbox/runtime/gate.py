"""The seam through which an embedding (the daemon) admits or refuses each session.

A daemon caps the sessions of a tenant and of the whole daemon, and ``rlm_query``
children are sessions too: they start inside the engine, where the daemon cannot see
them, so the Runtime asks the gate before any sandbox starts, children included.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from typing import Protocol


class SessionGate(Protocol):
    """``enter`` raises (an ``RlmboxError``) to refuse a session; ``leave`` is called
    once it has ended or failed to start, and is a no-op for an id not admitted."""

    def enter(self, session_id: str, parent: str | None) -> None: ...

    def leave(self, session_id: str) -> None: ...

    def child_work(self, parent: str) -> AbstractContextManager[None]:
        """Held while a child of ``parent`` starts its sandbox or runs a cell: where a
        daemon counts children against a tenant's cell cap."""
        ...


class OpenGate:
    """Admits everything: embedded use, where the caller is the operator."""

    def enter(self, session_id: str, parent: str | None) -> None:
        return None

    def leave(self, session_id: str) -> None:
        return None

    def child_work(self, parent: str) -> AbstractContextManager[None]:
        return contextlib.nullcontext()
