"""The frame codec shared by the host and the agent inside every sandbox.

A frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON: one
object whose ``t`` field names its type. Every field of every type is checked here,
strictly: unknown fields, wrong types (``True`` is not an integer), over-deep nesting,
invalid UTF-8 and lengths over the cap are all refused with a :class:`FrameError`.

This module is copied into sandboxes that have nothing but the standard library, so it
imports nothing else. The host translates :class:`FrameError` into
``rlmbox.errors.ProtocolError`` at its boundary.
"""

from __future__ import annotations

import json
import math
import struct

TYPE_CHECKING = False   # typing costs ~2 ms at every sandbox start: for mypy only
if TYPE_CHECKING:
    from typing import Any, Final

PROTOCOL_VERSION: Final = "1"
HEADER: Final = struct.Struct(">I")
DEFAULT_MAX_FRAME: Final = 8 * 1024 * 1024
MAX_DEPTH: Final = 64
MAX_ID_CHARS: Final = 64
MAX_NAME_CHARS: Final = 128

Frame = dict[str, "Any"]   # a string: typing is not imported at run time


class FrameError(ValueError):
    """A frame is malformed, oversized, truncated or breaks the schema."""


class FrameTooLargeError(FrameError):
    """A frame's declared length is over the cap; the stream cannot be resynchronised."""


# Field specs: name -> (accepted kind, required). Kinds are checked by _check_kind.
_ANY = "any"
_SPECS: Final[dict[str, dict[str, tuple[str, bool]]]] = {
    # agent -> host
    "ready": {"version": ("str", True), "pid": ("int", False)},
    "call": {"call": ("int", True), "fn": ("name", True), "args": ("list", True),
             "kwargs": ("dict", True)},
    "output": {"id": ("id", True), "stream": ("stream", True), "data": ("str", True)},
    "result": {"id": ("id", True), "status": ("status", True), "error": ("str?", False),
               "answer": (_ANY, False), "has_answer": ("bool", False),
               "dropped": ("dict", False)},
    # host -> agent
    "init": {"id": ("id", True), "config": ("dict", True)},
    "exec": {"id": ("id", True), "code": ("str", True), "compiled": ("str", False),
             "tools": ("list", False)},   # tools added since the last cell, bound before it
    "reply": {"call": ("int", True), "ok": ("bool", True), "value": (_ANY, False),
              "error": ("dict", False)},
    "shutdown": {},
    # the host interrupted this cell: written before its SIGINT, read as the cell begins
    # (a SIGINT that lands before then is ignored), else dropped (agent/frame_io.py)
    "interrupt": {"id": ("id", True)},
    # a large ASCII context's length, before the host writes it (agent/context_map.py)
    "reserve": {"chars": ("int", True)},
    # a file in or out of the sandbox's writable area, one chunk a frame (agent/files.py)
    "file": {"id": ("id", True), "op": ("fileop", True), "path": ("str", True),
             "roots": ("list", True), "data": ("str", False), "offset": ("int", False),
             "limit": ("int", False)},
}
AGENT_FRAMES: Final = frozenset({"ready", "call", "output", "result"})
HOST_FRAMES: Final = frozenset({"init", "exec", "reply", "shutdown", "file", "reserve",
                                "interrupt"})
RESULT_STATUSES: Final = frozenset({"ok", "error", "interrupted"})
STREAMS: Final = frozenset({"stdout", "stderr"})
FILE_OPS: Final = frozenset({"write", "read", "list"})


def encode(frame: Frame, max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """Encodes a frame; refuses non-JSON values (NaN, bytes) and frames over the cap."""
    try:
        body = _ENCODER.encode(frame).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise FrameError(f"frame is not encodable as JSON: {exc}") from exc
    if len(body) > max_frame:
        raise FrameTooLargeError(f"frame of {len(body)} bytes is over the {max_frame}-byte cap")
    return HEADER.pack(len(body)) + body


def decode_body(body: bytes, allowed: frozenset[str]) -> Frame:
    """Parses and validates one frame body; ``allowed`` is the set of types accepted."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FrameError(f"frame is not valid UTF-8 (byte {exc.start})") from exc
    try:
        frame = _DECODER.decode(text)
    except RecursionError as exc:
        raise FrameError("frame nests too deeply") from exc
    except ValueError as exc:
        raise FrameError(f"frame is not valid JSON: {exc}") from exc
    validate(frame, allowed)
    return frame  # type: ignore[no-any-return]


def validate(frame: object, allowed: frozenset[str]) -> None:
    """Checks a decoded frame against the schema of its type."""
    if not isinstance(frame, dict):
        raise FrameError(f"frame must be a JSON object, not {type(frame).__name__}")
    kind = frame.get("t")
    if not isinstance(kind, str) or kind not in _SPECS:
        raise FrameError(f"unknown frame type {_clip(kind)}")
    if kind not in allowed:
        raise FrameError(f"frame type {_clip(kind)} is not accepted in this direction")
    spec = _SPECS[kind]
    for name in frame:
        if name != "t" and name not in spec:
            raise FrameError(f"{kind}.{_clip(name)}: unknown field")
    for name, (field_kind, required) in spec.items():
        if name not in frame:
            if required:
                raise FrameError(f"{kind}.{name}: missing")
            continue
        _check_kind(f"{kind}.{name}", frame[name], field_kind)
    check_values(frame)


def _check_kind(where: str, value: object, kind: str) -> None:  # noqa: PLR0912 - one branch a kind
    ok: bool
    if kind == _ANY:
        ok = True
    elif kind == "str":
        ok = isinstance(value, str)
    elif kind == "str?":
        ok = value is None or isinstance(value, str)
    elif kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53
    elif kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "list":
        ok = isinstance(value, list)
    elif kind == "dict":
        ok = isinstance(value, dict)
    elif kind == "id":
        ok = isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS
    elif kind == "name":
        ok = isinstance(value, str) and 0 < len(value) <= MAX_NAME_CHARS
    elif kind == "stream":
        ok = isinstance(value, str) and value in STREAMS
    elif kind == "status":
        ok = isinstance(value, str) and value in RESULT_STATUSES
    elif kind == "fileop":
        ok = isinstance(value, str) and value in FILE_OPS
    else:  # pragma: no cover - a spec typo
        raise AssertionError(kind)
    if not ok:
        raise FrameError(f"{where}: expected {kind}, got {type(value).__name__} {_clip(value)}")


def check_values(value: object) -> None:
    """Depth cap, and every string and key must be real UTF-8 (no lone surrogates):
    what the host accepts it must be able to record."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise FrameError(f"frame nests deeper than {MAX_DEPTH} levels")
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, dict):
            for key, child in item.items():
                _check_text(key)
                stack.append((child, depth + 1))
        elif isinstance(item, list | tuple):   # a tuple travels as a list (the agent's answers)
            stack.extend((v, depth + 1) for v in item)


def _check_text(text: str) -> None:
    if text.isascii():   # O(1) in CPython: no lone surrogate possible, no copy made
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise FrameError(f"frame holds a lone surrogate at character {exc.start}") from exc


def _finite_float(literal: str) -> float:
    value = float(literal)
    if math.isinf(value):
        raise FrameError(f"frame holds a number that overflows: {_clip(literal)}")
    return value


def _refuse_constant(name: str) -> float:
    raise FrameError(f"frame contains the non-JSON constant {name}")


# made once: json.dumps and json.loads with options build a new coder at every call
# (about 3 µs a frame here, on both sides of every frame)
_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_DECODER: Final = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)


def _clip(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class FrameDecoder:
    """Incremental decoder: feed bytes as they arrive, take complete frames out.

    After a :class:`FrameError` the stream is unusable (a length can no longer be
    trusted); callers must stop reading it.
    """

    def __init__(self, allowed: frozenset[str], max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self._allowed = allowed
        self._max = max_frame
        self._buffer = bytearray()

    def feed(self, data: bytes | memoryview) -> None:
        self._buffer += data

    @property
    def pending_bytes(self) -> int:
        """Bytes received that do not yet form a frame (a torn frame at EOF)."""
        return len(self._buffer)

    def next_frame(self) -> Frame | None:
        """Returns the next complete frame, or None when more bytes are needed."""
        if len(self._buffer) < HEADER.size:
            return None
        (length,) = HEADER.unpack_from(self._buffer)
        if length > self._max:
            raise FrameTooLargeError(
                f"frame declares {length} bytes, over the {self._max}-byte cap")
        end = HEADER.size + length
        if len(self._buffer) < end:
            return None
        body = bytes(self._buffer[HEADER.size:end])
        del self._buffer[:end]
        return decode_body(body, self._allowed)
