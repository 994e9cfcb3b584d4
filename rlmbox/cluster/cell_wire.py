"""What travels between a node's running cell and the driver, both ways (pickled by Ray).

The node streams :class:`OutputEvent` and :class:`CallEvent` while the cell runs, then the
cell's ``ExecResult``; the driver answers each call with a :class:`DriverAnswer`. Values
cross as JSON text, so nothing but plain data is unpickled on either side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

#: what the driver runs for a node: a caller's tool, the driver's LM provider, the
#: frontend's own recursive sub-call (``Runtime(subcall=...)``), or the daemon's gate taking
#: or giving back an ``rlm_query`` child's cell slot (``cluster/child_slots.py``)
CallKind = Literal["tool", "lm", "subcall", "gate"]


@dataclass(frozen=True)
class OutputEvent:
    """A piece of the cell's output, as ``Session.exec``'s ``on_output`` gets it."""

    stream: str
    text: str


@dataclass(frozen=True)
class CallEvent:
    """The node asks the driver to run ``name`` of ``kind`` with bound ``args``; the
    policy already permitted it and the ledger reserved it on the node."""

    call_id: int
    kind: CallKind
    name: str
    args: dict[str, Any]


@dataclass(frozen=True)
class DriverAnswer:
    """The driver's outcome of one call: ``value_json`` when ``ok``, else the error's type
    name and message; ``tool_error`` when the tool raised ``ToolError`` (its message is
    meant for model code), ``rlmbox_error`` when it was one of rlmbox's errors (an
    ``LMError``: its message is meant for model code too), ``uncrossable`` when its value
    cannot cross to a sandbox."""

    ok: bool
    value_json: str | None = None
    error_type: str = ""
    message: str = ""
    tool_error: bool = False
    rlmbox_error: bool = False
    uncrossable: bool = False
