"""The driver's side of the cell slots a node's ``rlm_query`` children take.

Under ``rlmbox serve --ray`` a tenant's cell cap is kept by the daemon's gate, on the
driver, and the children run on their root's node. So before a child starts its sandbox
or runs a cell, the node asks the driver (through the root cell's channel) to take a slot
for it, as ``daemon/child_cells.py`` does on one machine, and gives it back after. A slot
is a context held open across two calls, so it lives here, by ticket, per root cell.

When the root cell's stream ends every slot still held is given back, and one taken after
that is given back at once: a node that dies, a session that closes while its children
wait, or a release that never arrives cannot keep the tenant's slots.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading

from rlmbox.cluster.cell_wire import CallEvent, DriverAnswer
from rlmbox.errors import RlmboxError
from rlmbox.runtime.gate import SessionGate


class ChildSlots:
    """The slots the children of one root cell hold, by ticket."""

    def __init__(self, gate: SessionGate) -> None:
        self._gate = gate
        self._held: dict[int, contextlib.ExitStack] = {}
        self._tickets = itertools.count(1)
        self._lock = threading.Lock()
        self._closed = False

    def run(self, event: CallEvent) -> DriverAnswer:
        """Takes (waiting its turn) or gives back a slot, as the node asked; never raises
        (as ``DriverCalls.run``): the node's child waits for an answer, so a gate that
        fails is that answer (review s15a)."""
        try:
            return self._run(event)
        except Exception as exc:
            return DriverAnswer(ok=False, error_type=type(exc).__name__, message=str(exc),
                                rlmbox_error=isinstance(exc, RlmboxError))

    def _run(self, event: CallEvent) -> DriverAnswer:
        if event.name == "take" and isinstance(event.args.get("parent"), str):
            ticket = self._take(event.args["parent"])
            if ticket is None:
                return DriverAnswer(ok=False, error_type="DriverUnreachable",
                                    message="the root cell ended before its child's turn",
                                    rlmbox_error=True)
            return DriverAnswer(ok=True, value_json=json.dumps(ticket))
        if event.name == "release" and type(event.args.get("ticket")) is int:
            self._release(event.args["ticket"])
            return DriverAnswer(ok=True, value_json="null")
        return DriverAnswer(ok=False, error_type="ValueError",
                            message=f"no child slot call {event.name!r} with {event.args!r}")

    def close(self) -> None:
        """The root cell ended: every slot still held is given back."""
        with self._lock:
            self._closed = True
            held, self._held = list(self._held.values()), {}
        for slot in held:
            slot.close()

    def _take(self, parent: str) -> int | None:
        slot = contextlib.ExitStack()
        slot.enter_context(self._gate.child_work(parent))   # waits for a free slot or lane
        with self._lock:
            if not self._closed:
                ticket = next(self._tickets)
                self._held[ticket] = slot
                return ticket
        slot.close()
        return None

    def _release(self, ticket: int) -> None:
        with self._lock:
            slot = self._held.pop(ticket, None)
        if slot is not None:
            slot.close()
