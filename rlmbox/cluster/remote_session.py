"""RemoteSession: a session living on a cluster node, driven from the driver.

The same surface as ``Session`` (``exec`` with ``on_output``, ``interrupt``, ``add_tools``,
the file transfers, ``close``, ``with``); the cell runs on the node, under the node's
policy, ledger and audit log. Its tools run here, on the driver, where the caller defined
them: the node streams each permitted call to this process, which runs it on a thread of
its own and answers (``cluster/driver_calls.py``), while the cell's output streams the
same way. When the node dies the session ends ``lost``: ``exec`` raises ``SessionLost``
naming the reason, and the loss is recorded in the cluster's index.
"""

from __future__ import annotations

import contextlib
import enum
import secrets
import threading
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from rlmbox.cluster.cell_wire import CallEvent, DriverAnswer, OutputEvent
from rlmbox.cluster.child_slots import ChildSlots
from rlmbox.cluster.driver_calls import DriverCalls
from rlmbox.cluster.driver_functions import portable_signature
from rlmbox.cluster.node import Placement
from rlmbox.errors import RlmboxError, SessionClosed, SessionKilled, SessionLost
from rlmbox.runtime.gate import SessionGate
from rlmbox.runtime.results import ExecResult
from rlmbox.runtime.session_files import FileEntry

if TYPE_CHECKING:
    from rlmbox.cluster.runtime import RayRuntime

OutputCallback = Callable[[str, str], None]


class RemoteSessionState(enum.Enum):
    READY = "ready"
    RUNNING = "running"
    DEAD = "dead"        # a cell killed the sandbox; exec refuses (as Session's DEAD)
    LOST = "lost"        # its node died; the sandbox died with the node actor
    CLOSED = "closed"


class RemoteSession:
    """A live REPL on a cluster node. Use as a context manager."""

    def __init__(self, runtime: RayRuntime, placement: Placement, calls: DriverCalls,
                 child_gate: SessionGate | None = None) -> None:
        self._runtime = runtime
        self.placement = placement
        self.id = placement.session_id
        self.node_id = placement.node_id
        self._calls = calls
        self._child_gate = child_gate
        self._state = RemoteSessionState.READY
        self._lock = threading.Lock()
        self._cells = threading.Lock()   # one cell at a time, as ``Session.exec``
        self.death_reason: str | None = None

    @property
    def state(self) -> RemoteSessionState:
        return self._state

    def exec(self, code: str, *, timeout: float | None = None,
             on_output: OutputCallback | None = None) -> ExecResult:
        """Runs one cell on the node (see ``Session.exec``); ``on_output`` gets its output
        here as it streams. A callback that raises is not called again for the cell.

        Raises:
            SessionLost: the node died before or during the cell.
            SessionClosed, SessionKilled, SessionError, AuditWriteError: as ``Session.exec``.
        """
        with self._cells:   # a second exec waits for the first, then runs
            self._check_usable()
            cell = secrets.token_hex(8)
            self._move(RemoteSessionState.RUNNING, only_from=RemoteSessionState.READY)
            slots = ChildSlots(self._child_gate) if self._child_gate is not None else None
            try:
                for event in self._runtime.node_stream(self, "exec", self.id, cell, code,
                                                       timeout):
                    if isinstance(event, OutputEvent):
                        on_output = _called(on_output, event)
                    elif isinstance(event, CallEvent):
                        self._answer_later(cell, event, slots)
                    elif isinstance(event, ExecResult):
                        if event.status == "killed":
                            self._die(event.error or "the sandbox was killed")
                        return event
            finally:
                if slots is not None:
                    slots.close()
                self._move(RemoteSessionState.READY, only_from=RemoteSessionState.RUNNING)
        raise RlmboxError("the node ended the cell without a result")

    def interrupt(self) -> bool:
        """Asks the running cell to stop (``Session.interrupt``)."""
        self._check_usable()
        return bool(self._runtime.node_call(self, "interrupt", self.id))

    def add_tools(self, tools: Mapping[str, Callable[..., Any]]) -> None:
        """Registers more tools (``Session.add_tools``): decided on the node, run here."""
        self._check_usable()
        self._runtime.node_call(self, "add_tools", self.id,
                                {name: portable_signature(fn) for name, fn in tools.items()})
        self._calls.add_tools(tools)

    def write_file(self, path: str, data: bytes | str) -> None:
        """``Session.write_file`` on the node (decided and audited there)."""
        self._check_usable()
        self._runtime.node_call(self, "write_file", self.id, path, data)

    def read_file(self, path: str) -> bytes:
        """``Session.read_file`` on the node."""
        self._check_usable()
        data: bytes = self._runtime.node_call(self, "read_file", self.id, path)
        return data

    def list_files(self, path: str) -> list[FileEntry]:
        """``Session.list_files`` on the node."""
        self._check_usable()
        entries: list[FileEntry] = self._runtime.node_call(self, "list_files", self.id, path)
        return entries

    def close(self, reason: str = "closed") -> None:
        """Ends the session on its node and frees its slot. Idempotent."""
        with self._lock:
            if self._state in (RemoteSessionState.CLOSED, RemoteSessionState.LOST):
                return
            self._state = RemoteSessionState.CLOSED
        self._runtime.end_session(self, reason)

    def lost_while_closing(self, reason: str) -> bool:
        """Called by the runtime when the close found the node dead: the session was lost
        before it could be closed. True the first time (the loss is then recorded)."""
        with self._lock:
            if self._state is not RemoteSessionState.CLOSED or self.death_reason is not None:
                return False
            self._state = RemoteSessionState.LOST
            self.death_reason = reason
            return True

    def mark_lost(self, reason: str) -> bool:
        """Called by the runtime when the node died; True the first time."""
        with self._lock:
            if self._state in (RemoteSessionState.CLOSED, RemoteSessionState.LOST):
                return False
            self._state = RemoteSessionState.LOST
            self.death_reason = reason
            return True

    def _answer_later(self, cell: str, event: CallEvent, slots: ChildSlots | None) -> None:
        """Runs the call on a thread of its own (a tool that hangs must not stop the
        stream: the node times it out and the cell goes on; a child waits its turn for a
        cell slot), then answers the node."""
        def run() -> None:
            if event.kind == "gate":
                answer = (slots.run(event) if slots is not None else DriverAnswer(
                    ok=False, error_type="ValueError", message="no gate on this driver"))
            else:
                answer = self._calls.run(event)
            # the cell or the node may be gone: then nothing waits for this answer
            with contextlib.suppress(RlmboxError):
                self._runtime.node_call(self, "answer", cell, event.call_id, answer)

        threading.Thread(target=run, name=f"rlmbox-driver-{event.name}", daemon=True).start()

    def _die(self, reason: str) -> None:
        with self._lock:
            if self._state in (RemoteSessionState.READY, RemoteSessionState.RUNNING):
                self._state = RemoteSessionState.DEAD
                self.death_reason = reason

    def _move(self, to: RemoteSessionState, only_from: RemoteSessionState) -> None:
        with self._lock:
            if self._state is only_from:
                self._state = to

    def _check_usable(self) -> None:
        state = self._state
        if state is RemoteSessionState.LOST:
            raise SessionLost(f"session {self.id} was lost: {self.death_reason}")
        if state is RemoteSessionState.CLOSED:
            raise SessionClosed(f"session {self.id} is closed")
        if state is RemoteSessionState.DEAD:
            raise SessionKilled(f"session {self.id} is dead: {self.death_reason}")

    def __enter__(self) -> RemoteSession:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close("exception" if exc_type else "closed")


def _called(callback: OutputCallback | None, event: OutputEvent) -> OutputCallback | None:
    """Hands the output to ``callback``; the callback to use next (None once it raised)."""
    if callback is None or not event.text:
        return callback
    try:
        callback(event.stream, event.text)
    except Exception:   # the caller's bug must not end the cell or the session
        return None
    return callback
