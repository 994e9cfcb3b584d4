"""RemoteSession: a session living on a cluster node, driven from the driver.

The same surface as ``Session`` for running cells (``exec``, ``interrupt``, ``close``,
``with``); the cell runs on the node, under the node's policy, ledger and audit log. When
the node dies the session ends ``lost``: ``exec`` raises ``SessionLost`` naming the
reason, and the loss is recorded in the cluster's index.
"""

from __future__ import annotations

import enum
import threading
from types import TracebackType
from typing import TYPE_CHECKING

from rlmbox.cluster.node import Placement
from rlmbox.errors import SessionClosed, SessionLost
from rlmbox.runtime.results import ExecResult

if TYPE_CHECKING:
    from rlmbox.cluster.runtime import RayRuntime


class RemoteSessionState(enum.Enum):
    OPEN = "open"
    LOST = "lost"        # its node died; the sandbox died with the node actor
    CLOSED = "closed"


class RemoteSession:
    """A live REPL on a cluster node. Use as a context manager."""

    def __init__(self, runtime: RayRuntime, placement: Placement) -> None:
        self._runtime = runtime
        self.placement = placement
        self.id = placement.session_id
        self.node_id = placement.node_id
        self._state = RemoteSessionState.OPEN
        self._lock = threading.Lock()
        self.death_reason: str | None = None

    @property
    def state(self) -> RemoteSessionState:
        return self._state

    def exec(self, code: str, *, timeout: float | None = None) -> ExecResult:
        """Runs one cell on the node (see ``Session.exec``).

        Raises:
            SessionLost: the node died before or during the cell.
            SessionClosed, SessionKilled, SessionError, AuditWriteError: as ``Session.exec``.
        """
        self._check_open()
        result: ExecResult = self._runtime.node_call(self, "exec", self.id, code, timeout)
        return result

    def interrupt(self) -> bool:
        """Asks the running cell to stop (``Session.interrupt``)."""
        self._check_open()
        return bool(self._runtime.node_call(self, "interrupt", self.id))

    def close(self, reason: str = "closed") -> None:
        """Ends the session on its node and frees its slot. Idempotent."""
        with self._lock:
            if self._state is not RemoteSessionState.OPEN:
                return
            self._state = RemoteSessionState.CLOSED
        self._runtime.end_session(self, reason)

    def mark_lost(self, reason: str) -> bool:
        """Called by the runtime when the node died; True the first time."""
        with self._lock:
            if self._state is not RemoteSessionState.OPEN:
                return False
            self._state = RemoteSessionState.LOST
            self.death_reason = reason
            return True

    def _check_open(self) -> None:
        if self._state is RemoteSessionState.LOST:
            raise SessionLost(f"session {self.id} was lost: {self.death_reason}")
        if self._state is RemoteSessionState.CLOSED:
            raise SessionClosed(f"session {self.id} is closed")

    def __enter__(self) -> RemoteSession:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close("exception" if exc_type else "closed")
