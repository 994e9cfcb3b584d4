"""What a caller's tool may hand back to model code: one JSON value that fits in a frame.

A tool runs on the host and is the caller's code, so a result that cannot be encoded is the
tool's fault. Checked here, it becomes that call's error (recorded, reported to model code as
``HostCallError`` naming the tool); unchecked, the reply frame would fail to encode and the
session would die blaming the sandbox.
"""

from __future__ import annotations

import json
from typing import Any, Final

from rlmbox.sandboxes.protocol import DEFAULT_MAX_FRAME, FrameError, check_values

#: room in the frame for the reply's own fields (``{"t":"reply","call":N,"ok":true,...}``)
_REPLY_OVERHEAD: Final = 1024
MAX_RESULT_BYTES: Final = DEFAULT_MAX_FRAME - _REPLY_OVERHEAD


class UncrossableResult(Exception):
    """A host function returned a value the wire cannot carry to the sandbox."""


def crossable(function: str, value: Any) -> Any:
    """``value`` unchanged when it can cross as one reply frame; else ``UncrossableResult``.
    The agent checks what it receives as the host checks what it sends (depth, real
    UTF-8), so the value is checked here inside a reply of its own."""
    try:
        check_values({"t": "reply", "value": value})
    except FrameError as exc:
        raise UncrossableResult(
            f"{function} returned a value that cannot cross to the sandbox: {exc}") from exc
    try:
        size = len(json.dumps(value, ensure_ascii=False, allow_nan=False,
                              separators=(",", ":")).encode("utf-8"))
    except (TypeError, ValueError) as exc:
        raise UncrossableResult(
            f"{function} returned a value that cannot cross to the sandbox: only JSON "
            f"values do ({exc})") from exc
    if size > MAX_RESULT_BYTES:
        raise UncrossableResult(
            f"{function} returned a value that cannot cross to the sandbox: {size} bytes "
            f"is over the {MAX_RESULT_BYTES}-byte cap of one reply")
    return value
