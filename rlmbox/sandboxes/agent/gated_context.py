"""``context`` inside the sandbox under ``context: gated``: every read is a host call.

The object looks enough like a string for RLM code (``len(context)``, ``context[a:b]``,
``"x" in context``) but holds no text: each access asks the host, whose policy decides
and audits it. Standard library only: this file is copied into every sandbox.
"""

from __future__ import annotations

import re
from collections.abc import Callable

TYPE_CHECKING = False   # typing costs ~2 ms at every sandbox start: for mypy only
if TYPE_CHECKING:
    from typing import Any


class GatedContext:
    """A read-only, host-backed view of the task's context."""

    __slots__ = ("_call", "_length")

    def __init__(self, call: Callable[..., Any]) -> None:
        self._call = call
        self._length: int | None = None

    def __len__(self) -> int:
        if self._length is None:   # the context never changes during a session
            self._length = int(self._call("context.len"))
        return self._length

    def __getitem__(self, key: int | slice | str) -> str:
        if isinstance(key, str):
            return self.document(key)
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step == 1:
                return str(self._call("context.read", start, max(start, stop)))
            positions = range(start, stop, step)
            if not positions:
                return ""
            low, high = min(positions), max(positions) + 1
            text = str(self._call("context.read", low, high))
            return "".join(text[p - low] for p in positions)
        if isinstance(key, int) and not isinstance(key, bool):
            length = len(self)
            index = key + length if key < 0 else key
            if not 0 <= index < length:
                raise IndexError("context index out of range")
            return str(self._call("context.read", index, index + 1))
        raise TypeError(f"context indices must be int, slice or document id, "
                        f"not {type(key).__name__}")

    def __contains__(self, text: object) -> bool:
        if not isinstance(text, str):
            raise TypeError("'in <context>' requires a str")
        return bool(self.search(re.escape(text), 1)) if text else True

    def __iter__(self) -> Any:
        # Iterating character by character would be one host call per character.
        raise TypeError("iterate over context.lines(a, b) or slices, not the context itself")

    def __repr__(self) -> str:
        return ("<gated context: len(context), context[a:b], context.search(pattern, "
                "max_hits), context.lines(a, b), context.documents(), context[doc_id]>")

    __str__ = __repr__

    def __getattr__(self, name: str) -> Any:
        """``context.splitlines()``, ``context.count("x")``...: a public ``str`` method runs
        on the whole text, read through one decided ``context.read`` (so the policy's
        per-call byte cap still applies and a large context is refused by name)."""
        if name.startswith("_") or not callable(getattr(str, name, None)):
            raise AttributeError(f"'GatedContext' object has no attribute {name!r}")
        return getattr(self[:], name)

    def search(self, pattern: str, max_hits: int = 10) -> list[tuple[int, int, str]]:
        """Regex matches as ``(start, end, text)``, at most ``max_hits``."""
        hits = self._call("context.search", pattern, max_hits)
        return [(int(s), int(e), str(t)) for s, e, t in hits]

    def lines(self, start: int, end: int | None = None) -> list[str]:
        """Lines ``start:end`` (0-based, end exclusive); one line when ``end`` is omitted."""
        stop = start + 1 if end is None else end
        return [str(line) for line in self._call("context.lines", start, stop)]

    def documents(self) -> list[dict[str, Any]]:
        """Documents the policy lets this session read: ``{"id", "start", "end"}``."""
        return list(self._call("context.documents"))

    def document(self, doc_id: str) -> str:
        """The full text of one document."""
        return str(self._call("context.document", doc_id))
