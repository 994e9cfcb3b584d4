"""What ``Session.exec`` returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

CellStatus = Literal["ok", "error", "interrupted", "killed"]


@dataclass(frozen=True)
class ExecResult:
    """The outcome of one cell, measured on the host.

    ``answer`` is set when the cell called ``FINAL``/``FINAL_VAR`` or set rlms'
    ``answer = {"content": ..., "ready": True}``; ``has_answer`` tells an answer of ``None``
    from no answer. ``truncated`` means output went over the policy's cap; ``dropped``
    counts the bytes lost per stream.
    """

    status: CellStatus
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    answer: Any = None
    has_answer: bool = False
    duration_s: float = 0.0
    host_calls: int = 0
    truncated: bool = False
    dropped: dict[str, int] = field(default_factory=dict)
    cell_id: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"
