"""The node's side of one running cell's conversation with the driver.

The cell's output and its calls to driver-side functions go into one queue that the node
actor's streaming ``exec`` drains to the driver; the driver's answers come back through
``NodeHost.answer``. A call waits for its answer as long as its body runs on the driver,
past the tool timeout and past the cell's end, as a local call's thread runs to its end:
the dispatcher alone decides when the cell stops waiting (it abandons the call at the tool
timeout or the cell's wall time), and the late answer then charges the call's real usage
and frees its ``max_concurrent`` slot. A driver that never answers cannot hold a node
thread past its session: closing the channel (the session closes, the node shuts down)
releases every wait; a dead driver takes the node actor with it (Ray's ownership).

Which cell a call belongs to travels in a context variable set on the cell's thread:
every host call runs in a copy of its caller's context (``runtime/bounded_call.py``), so
the calls of an ``rlm_query`` child reach its root cell's channel too.
"""

from __future__ import annotations

import contextvars
import itertools
import json
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from rlmbox.cluster.cell_wire import CallEvent, CallKind, DriverAnswer, OutputEvent
from rlmbox.errors import RlmboxError, SessionError, ToolError
from rlmbox.runtime.crossing import UncrossableResult
from rlmbox.runtime.results import ExecResult

CURRENT_CELL: contextvars.ContextVar[CellChannel] = contextvars.ContextVar("rlmbox_cell")


class DriverUnreachable(RlmboxError):
    """A driver-side function was called outside a cell streamed to a driver, after its
    cell ended, or its session closed before the driver answered."""


@dataclass
class _Pending:
    done: threading.Event = field(default_factory=threading.Event)
    answer: DriverAnswer | None = None


@dataclass(frozen=True)
class _End:
    result: ExecResult | None
    error: BaseException | None


class CellChannel:
    """Events of one cell for the driver, and the driver's answers to its calls (also
    after the cell ended, until :meth:`close`)."""

    def __init__(self) -> None:
        self._events: queue.SimpleQueue[OutputEvent | CallEvent | _End] = queue.SimpleQueue()
        self._pending: dict[int, _Pending] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._ended = False
        self._closed = False

    def output(self, stream: str, text: str) -> None:
        self._events.put(OutputEvent(stream, text))

    def call(self, kind: CallKind, name: str, args: dict[str, Any]) -> Any:
        """Asks the driver to run ``name`` and waits for its answer, or until the channel
        closes.

        Raises:
            DriverUnreachable: the cell had ended, or the channel closed first.
            Exception: the driver's error, rebuilt (see :func:`answered`).
        """
        pending = _Pending()
        with self._lock:
            if self._ended:
                raise DriverUnreachable(f"{name}: the cell ended before the call")
            call_id = next(self._ids)
            self._pending[call_id] = pending
            # queued under the lock: never after the cell's last event, which no one reads
            self._events.put(CallEvent(call_id, kind, name, args))
        try:
            pending.done.wait()
        finally:
            with self._lock:
                self._pending.pop(call_id, None)
        if pending.answer is None:
            raise DriverUnreachable(f"{name}: the session closed before the driver answered")
        return answered(pending.answer)

    def answer(self, call_id: int, answer: DriverAnswer) -> bool:
        """Delivers the driver's answer; False when no call waits for it any more or it
        was answered already (the first answer stands)."""
        with self._lock:
            pending = self._pending.get(call_id)
            if pending is None or pending.answer is not None:
                return False
            pending.answer = answer
        pending.done.set()
        return True

    def end(self, result: ExecResult | None, error: BaseException | None) -> None:
        """The cell is over: its last event is queued. Calls still waiting go on waiting
        for their answers (the dispatcher has abandoned them)."""
        with self._lock:
            self._ended = True
            self._events.put(_End(result, error))

    @property
    def finished(self) -> bool:
        """Whether nothing more can come through: the cell ended and no call waits."""
        with self._lock:
            return self._closed or (self._ended and not self._pending)

    def close(self) -> None:
        """Releases every call still waiting (``DriverUnreachable``): the session is
        closing, so no answer is awaited any more."""
        with self._lock:
            self._ended = self._closed = True
            waiting, self._pending = list(self._pending.values()), {}
        for pending in waiting:
            pending.done.set()

    def events(self) -> Iterator[OutputEvent | CallEvent | ExecResult]:
        """The cell's events in order, its result last; its error is raised at the end."""
        while True:
            event = self._events.get()
            if isinstance(event, _End):
                if event.error is not None:
                    raise event.error
                if event.result is None:
                    raise SessionError("the cell ended without a result")
                yield event.result
                return
            yield event


def answered(answer: DriverAnswer) -> Any:
    """The value of a driver's answer, or its error raised as the node's dispatcher
    should judge it (a ``ToolError``'s message reaches model code, another error only its
    type's name)."""
    if answer.ok:
        return None if answer.value_json is None else json.loads(answer.value_json)
    if answer.uncrossable:
        raise UncrossableResult(answer.message)
    if answer.tool_error:
        raise ToolError(answer.message)
    raise raised(answer.error_type, answer.message, rlmbox_error=answer.rlmbox_error)


def raised(type_name: str, message: str, *, rlmbox_error: bool) -> Exception:
    """An exception named as the driver's was (its class stays on the driver), so the
    audit record and model code see what they would see with an embedded runtime."""
    name = type_name if type_name.isidentifier() else "DriverError"
    base = RlmboxError if rlmbox_error else Exception
    error: Exception = type(name, (base,), {})(message)
    return error


def current_cell(name: str) -> CellChannel:
    """The channel of the cell this host call belongs to."""
    channel = CURRENT_CELL.get(None)
    if channel is None:
        raise DriverUnreachable(f"{name} runs on the driver, and no driver streams this cell")
    return channel
