"""After each rlms cell: a read-only snapshot of the sandbox namespace and the answer signal.

rlms' own REPL hands back its namespace dict; its result formatting ("REPL variables: ...")
and its users read values from it. The sandbox's values cannot be handed over as objects, so
after each cell one small audited cell reports a JSON copy of every variable that has one
(small enough: :data:`VALUE_LIMIT` each, :data:`TOTAL_LIMIT` in all) and, for the rest, a
:class:`SandboxValue` naming the type. The report comes from the sandbox, so it is data to
show, never to trust.

The same report says whether the cell set ``answer["ready"]``: rlms' REPL answers when the
model *sets* it (its ``answer`` dict fires on assignment), not on every later cell in which it
is still true, which matters across the turns of a persistent session.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

VALUE_LIMIT = 64 * 1024
TOTAL_LIMIT = 256 * 1024
PREVIEW_CHARS = 200

# defined once per sandbox; _rlmbox_hidden = the names rlmbox injected (functions, FINAL, ...)
SNAPSHOT_SETUP = f'''
_rlmbox_hidden = {{_n for _n, _v in globals().items() if callable(_v)}}
_rlmbox_ready = [False]
class _RlmsAnswer(dict):
    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        if key == "ready" and value:
            _rlmbox_ready[0] = True
answer = _RlmsAnswer(content="", ready=False)
def _rlmbox_snapshot():
    import json
    global answer
    if type(answer) is dict:   # rebound to a plain dict: rlms reads it once, then re-wraps
        _rlmbox_ready[0] = _rlmbox_ready[0] or bool(answer.get("ready"))
        answer = _RlmsAnswer(answer)
    ready_set, _rlmbox_ready[0] = _rlmbox_ready[0], False
    out, total = {{}}, 0
    for name, value in list(globals().items()):
        if name.startswith("_") or name in _rlmbox_hidden:
            continue
        text = None
        if not (isinstance(value, str) and len(value) > {VALUE_LIMIT}):
            try:
                text = json.dumps(value, allow_nan=False)
            except (TypeError, ValueError, RecursionError):
                text = None
        if text is not None and len(text) <= {VALUE_LIMIT} and total + len(text) <= {TOTAL_LIMIT}:
            total += len(text)
            out[name] = ["tuple" if type(value) is tuple else "value", value]
            continue
        try:
            preview = repr(value)[:{PREVIEW_CHARS}]
        except Exception:
            preview = "?"
        out[name] = ["opaque", type(value).__name__, preview]
    is_answer = isinstance(answer, dict)
    FINAL({{"vars": out, "ready_set": ready_set, "ready": is_answer and bool(answer.get("ready")),
           "content": str(answer.get("content", "")) if is_answer and ready_set else None}})
'''
SNAPSHOT_CELL = "_rlmbox_snapshot()"


@dataclass(frozen=True)
class SandboxValue:
    """A variable whose value stayed in the sandbox (not JSON, or too large to copy)."""

    type_name: str
    preview: str

    def __repr__(self) -> str:
        return f"<{self.type_name} in the sandbox: {self.preview}>"


@dataclass(frozen=True)
class CellReport:
    """What the after-cell report says: the variables, and the answer if the cell set it."""

    variables: dict[str, Any]
    answered: str | None     # answer["content"] when the cell set answer["ready"]
    still_ready: bool        # answer["ready"] is true (set by an earlier cell)


def decode_report(report: Any) -> CellReport:
    """The report cell's answer; malformed parts are dropped (it is sandbox output)."""
    if not isinstance(report, Mapping):
        return CellReport({}, None, False)
    content = report.get("content")
    answered = content if report.get("ready_set") is True and isinstance(content, str) else None
    return CellReport(_variables(report.get("vars")), answered, report.get("ready") is True)


def _variables(listing: Any) -> dict[str, Any]:
    if not isinstance(listing, Mapping):
        return {}
    values: dict[str, Any] = {}
    for name, entry in listing.items():
        if not (isinstance(name, str) and isinstance(entry, list) and entry):
            continue
        if entry[0] == "value" and len(entry) == 2:
            values[name] = entry[1]
        elif entry[0] == "tuple" and len(entry) == 2 and isinstance(entry[1], list):
            values[name] = tuple(entry[1])
        elif entry[0] == "opaque" and len(entry) == 3:
            values[name] = SandboxValue(str(entry[1]), str(entry[2]))
    return values
