"""What ``Session.exec`` returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

CellStatus = Literal["ok", "error", "interrupted", "killed"]


@dataclass(frozen=True)
class ExecResult:
    """The outcome of one cell.

    Two kinds of field. Measured by the host, so the sandbox cannot change them:
    ``status`` ``"killed"`` and ``"interrupted"``, ``duration_s``, ``host_calls``,
    ``truncated``, ``dropped`` and ``cell_id``. Reported by the sandbox, so model code can
    forge them (a thread left running by an earlier cell included): ``stdout``, ``stderr``,
    ``error``, ``answer``, ``has_answer`` and the statuses ``"ok"`` and ``"error"``; the
    host only bounds them, each to the policy's ``output_bytes``.

    ``answer`` is set when the cell called ``FINAL``/``FINAL_VAR`` or set rlms'
    ``answer = {"content": ..., "ready": True}``; ``has_answer`` tells an answer of ``None``
    from no answer. An answer over the cap is cut (a non-string one to the start of its
    JSON text). ``dropped`` counts the bytes cut from ``stdout``, ``stderr``, ``error`` and
    ``answer``; ``truncated`` is true when any count is not zero.
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
