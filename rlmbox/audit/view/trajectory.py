"""The run as a person reads it: a tree of sessions, each a timeline of cells and calls.

Built from records alone. Every field of a record may be hostile (the sandbox wrote the
outputs; whoever tampered with the log wrote the rest), so each value is read through a
typed accessor that turns a wrong type into "absent" instead of an exception.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Events that say a limit was hit or a sandbox was ended by the host.
STOP_EVENTS = frozenset({"limit.exceeded", "sandbox.killed", "code.rejected",
                         "session.refused", "session.lost"})


def text_field(record: Mapping[str, Any], key: str) -> str | None:
    """``record[key]`` when it is a string, else None."""
    value = record.get(key)
    return value if isinstance(value, str) else None


def int_field(record: Mapping[str, Any], key: str) -> int | None:
    """``record[key]`` when it is an integer (not a bool), else None."""
    value = record.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def number_field(record: Mapping[str, Any], key: str) -> float | None:
    """``record[key]`` when it is a number (not a bool), else None."""
    value = record.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def body_digest(record: Mapping[str, Any], name: str) -> str | None:
    """The digest the record gives for body ``name``, when it lists one."""
    names = record.get("bodies")
    if not isinstance(names, list) or name not in names:
        return None
    return text_field(record, f"{name}_sha256")


@dataclass
class Call:
    """One host call: its start (if admitted) and its outcome (if recorded)."""

    seq: int
    function: str
    start: dict[str, Any] | None = None
    outcome: dict[str, Any] | None = None

    @property
    def record(self) -> dict[str, Any]:
        """The outcome when there is one, else the start."""
        return self.outcome or self.start or {}

    @property
    def denied(self) -> bool:
        """True when the policy refused the call."""
        return self.record.get("decision") == "deny"


@dataclass
class Cell:
    """One ``exec``: its code, its calls, what stopped it, and its result."""

    seq: int
    cell_id: str
    exec_record: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    calls: list[Call] = field(default_factory=list)
    stops: list[dict[str, Any]] = field(default_factory=list)
    last_seq: int = 0


@dataclass
class Session:
    """One sandboxed REPL; ``entries`` are its cells, root-model calls and stops, in order."""

    session_id: str
    parent: str | None
    depth: int
    tenant: str | None
    created: dict[str, Any] | None = None
    ended: dict[str, Any] | None = None
    entries: list[Cell | Call | dict[str, Any]] = field(default_factory=list)
    children: list[str] = field(default_factory=list)

    @property
    def cells(self) -> list[Cell]:
        """The cells, in the order they ran."""
        return [entry for entry in self.entries if isinstance(entry, Cell)]


@dataclass
class Trajectory:
    """Every session of the log; ``roots`` are those without a parent in it."""

    sessions: dict[str, Session] = field(default_factory=dict)
    roots: list[str] = field(default_factory=list)
    records: int = 0

    def walk(self, root: str) -> list[tuple[Session, int]]:
        """``root`` and its descendants with their level below it, depth first, in the
        order they started; a forged parent link that forms a cycle is cut."""
        ordered: list[tuple[Session, int]] = []
        stack = [(root, 0)]
        seen: set[str] = set()
        while stack:
            session_id, level = stack.pop()
            if session_id in seen or session_id not in self.sessions:
                continue
            seen.add(session_id)
            session = self.sessions[session_id]
            ordered.append((session, level))
            stack.extend((child, level + 1) for child in reversed(session.children))
        return ordered


class _Builder:
    def __init__(self) -> None:
        self.trajectory = Trajectory()
        self._cells: dict[tuple[str, str], Cell] = {}
        self._calls: dict[tuple[str, str, int], Call] = {}

    def add(self, record: dict[str, Any]) -> None:
        seq, session_id = int_field(record, "seq"), text_field(record, "session")
        self.trajectory.records += 1
        if seq is None or session_id is None:
            return   # log-wide events (policy.load, daemon.*) belong to no session
        session = self._session(session_id, record)
        event = text_field(record, "event") or ""
        if event == "session.create":
            session.created = record
        elif event == "session.end":
            session.ended = record
        elif event in ("host.call.start", "host.call"):
            self._call(session, seq, event, record)
        else:
            cell_id = text_field(record, "cell")
            cell = self._cell(session, cell_id, seq) if cell_id is not None else None
            if cell is None:
                if event in STOP_EVENTS:
                    session.entries.append(record)
                return
            cell.last_seq = seq
            if event == "code.exec":
                cell.exec_record = record
            elif event == "cell.result":
                cell.result = record
            elif event in STOP_EVENTS:
                cell.stops.append(record)

    def _session(self, session_id: str, record: dict[str, Any]) -> Session:
        known = self.trajectory.sessions.get(session_id)
        if known is not None:
            return known
        parent = text_field(record, "parent")
        session = Session(session_id, parent, int_field(record, "depth") or 0,
                          text_field(record, "tenant"))
        self.trajectory.sessions[session_id] = session
        if parent is not None and parent in self.trajectory.sessions and parent != session_id:
            self.trajectory.sessions[parent].children.append(session_id)
        else:
            self.trajectory.roots.append(session_id)
        return session

    def _cell(self, session: Session, cell_id: str, seq: int) -> Cell:
        key = (session.session_id, cell_id)
        cell = self._cells.get(key)
        if cell is None:
            cell = self._cells[key] = Cell(seq, cell_id, last_seq=seq)
            session.entries.append(cell)
        return cell

    def _call(self, session: Session, seq: int, event: str, record: dict[str, Any]) -> None:
        cell_id, call_id = text_field(record, "cell"), int_field(record, "call_id")
        if cell_id is None or call_id is None:
            # a root-model completion of the RLM loop: between cells, start then outcome
            key = (session.session_id, "", 0)
        else:
            key = (session.session_id, cell_id, call_id)
        call = self._calls.get(key)
        if call is None or call.outcome is not None or (call.start and event == "host.call.start"):
            call = self._calls[key] = Call(seq, text_field(record, "function") or "?")
            if cell_id is None or call_id is None:
                session.entries.append(call)
            else:
                self._cell(session, cell_id, seq).calls.append(call)
        if event == "host.call.start":
            call.start = record
        else:
            call.outcome = record
        if cell_id is not None and call_id is not None:
            self._cell(session, cell_id, seq).last_seq = seq


def build_trajectory(records: Iterable[dict[str, Any]]) -> Trajectory:
    """The sessions, cells and calls that ``records`` (in chain order) describe."""
    builder = _Builder()
    for record in records:
        builder.add(record)
    return builder.trajectory
