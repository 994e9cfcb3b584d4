"""Every string a sandbox reports for a cell, bounded on the host by the policy's cap.

The sandbox can forge any frame, so what its ``output`` and ``result`` frames carry is cut
here, before it reaches ``ExecResult``, a callback or the audit log: each of stdout,
stderr, the error text and the answer gets at most ``limits.output_bytes`` (UTF-8 bytes),
and the bytes cut are counted so the truncation is reported, never silent.
"""

from __future__ import annotations

import json
from typing import Any

TRUNCATION_MARKER = "\n[rlmbox: output truncated, {dropped} bytes dropped]\n"


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def cut(text: str, cap: int) -> tuple[str, int]:
    """``text`` cut to at most ``cap`` UTF-8 bytes (never inside a character), and the
    number of bytes cut."""
    data = _utf8(text)
    if len(data) <= cap:
        return text, 0
    head = data[:max(cap, 0)].decode("utf-8", "ignore")
    return head, len(data) - len(_utf8(head))


class CappedStream:
    """One output stream of one cell, capped on the host."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.parts: list[str] = []
        self.kept = 0
        self.dropped = 0

    def add(self, text: str) -> str:
        """Keeps what fits under the cap; returns the part kept ("" when none)."""
        head, dropped = cut(text, self.cap - self.kept)
        if head:
            self.parts.append(head)
            self.kept += len(_utf8(head))
        self.dropped += dropped
        return head

    def text(self, agent_dropped: int) -> str:
        """The kept text, with a marker naming every byte lost (here or in the agent)."""
        dropped = self.dropped + agent_dropped
        body = "".join(self.parts)
        return body + TRUNCATION_MARKER.format(dropped=dropped) if dropped else body


def capped_error(error: str | None, cap: int) -> tuple[str | None, int]:
    """The result's error text within ``cap``, marked when cut; and the bytes cut."""
    if error is None:
        return None, 0
    head, dropped = cut(error, cap)
    return (head + TRUNCATION_MARKER.format(dropped=dropped) if dropped else head), dropped


def answer_json(answer: Any) -> str:
    """The answer as the audit log digests it: JSON, keys sorted, not ASCII-escaped."""
    return json.dumps(answer, ensure_ascii=False, sort_keys=True)


def capped_answer(answer: Any, cap: int) -> tuple[Any, int]:
    """The answer within ``cap``, and the bytes cut.

    A string is cut like output. Any other value whose JSON is over the cap becomes the
    first ``cap`` bytes of that JSON, as a string: a structure cannot be cut in a way that
    keeps its meaning, and the caller is told through the dropped count.
    """
    if isinstance(answer, str):
        return cut(answer, cap)
    text = answer_json(answer)
    if len(_utf8(text)) <= cap:
        return answer, 0
    return cut(text, cap)
