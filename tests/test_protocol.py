"""The frame codec refuses every kind of bad frame and round-trips good ones."""

from __future__ import annotations

import contextlib
import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlmbox.sandboxes import protocol
from rlmbox.sandboxes.protocol import AGENT_FRAMES, HOST_FRAMES, FrameDecoder, FrameError


def raw(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def decode_all(data: bytes, allowed: frozenset[str] = AGENT_FRAMES,
               cap: int = protocol.DEFAULT_MAX_FRAME) -> list[dict[str, object]]:
    decoder = FrameDecoder(allowed, cap)
    decoder.feed(data)
    frames = []
    while (frame := decoder.next_frame()) is not None:
        frames.append(frame)
    return frames


@pytest.mark.parametrize(("body", "message"), [
    (b"\xff\xfe", "UTF-8"),
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "JSON object"),
    (b'{"t": "nope"}', "unknown frame type"),
    (b'{"t": "exec", "id": "a", "code": "x"}', "not accepted in this direction"),
    (b'{"t": "call", "call": 1, "fn": "f", "args": [], "kwargs": {}, "x": 1}', "unknown field"),
    (b'{"t": "call", "call": true, "fn": "f", "args": [], "kwargs": {}}', "expected int"),
    (b'{"t": "call", "call": -1, "fn": "f", "args": [], "kwargs": {}}', "expected int"),
    (b'{"t": "call", "call": 1, "fn": "", "args": [], "kwargs": {}}', "expected name"),
    (b'{"t": "call", "call": 1, "fn": "f", "args": {}, "kwargs": {}}', "expected list"),
    (b'{"t": "call", "call": 1, "fn": "f", "args": []}', "missing"),
    (b'{"t": "output", "id": "a", "stream": "stdin", "data": ""}', "expected stream"),
    (b'{"t": "result", "id": "a", "status": "pwned"}', "expected status"),
    (b'{"t": "result", "id": "a", "status": {"t": "ok"}}', "expected status"),
    (b'{"t": "result", "id": "a", "status": ["ok"]}', "expected status"),
    (b'{"t": "output", "id": "a", "stream": {}, "data": ""}', "expected stream"),
    (b'{"t": "result", "id": "' + b"a" * 65 + b'", "status": "ok"}', "expected id"),
    (b'{"t": "ready", "version": "1", "n": NaN}', "non-JSON constant"),
    (b'{"t": "call", "call": 1, "fn": "f", "args": [1e999], "kwargs": {}}', "overflows"),
    (b'{"t": "ready", "version": "\\ud800"}', "lone surrogate"),
    (b'{"t": "call", "call": 1, "fn": "f", "args": [], "kwargs": {"\\udfff": 1}}',
     "lone surrogate"),
])
def test_bad_frames_are_refused_with_a_clear_error(body: bytes, message: str) -> None:
    with pytest.raises(FrameError, match=message):
        decode_all(raw(body))


def test_deep_nesting_is_refused() -> None:
    body = b'{"t": "call", "call": 1, "fn": "f", "args": ' + b"[" * 100 + b"]" * 100 + \
        b', "kwargs": {}}'
    with pytest.raises(FrameError, match="nests"):
        decode_all(raw(body))


def test_pathological_nesting_does_not_crash() -> None:
    body = b'{"t": "call", "call": 1, "fn": "f", "args": ' + b"[" * 100_000 + b"]" * 100_000 + \
        b', "kwargs": {}}'
    with pytest.raises(FrameError):
        decode_all(raw(body))


def test_oversized_length_is_refused_before_reading_the_body() -> None:
    decoder = FrameDecoder(AGENT_FRAMES, max_frame=1024)
    decoder.feed(struct.pack(">I", 1025))
    with pytest.raises(protocol.FrameTooLargeError):
        decoder.next_frame()


def test_truncated_frame_waits_and_reports_pending_bytes() -> None:
    data = protocol.encode({"t": "ready", "version": "1"})
    decoder = FrameDecoder(AGENT_FRAMES)
    decoder.feed(data[:-3])
    assert decoder.next_frame() is None
    assert decoder.pending_bytes == len(data) - 3
    decoder.feed(data[-3:])
    assert decoder.next_frame() == {"t": "ready", "version": "1"}


def test_encode_refuses_non_json_values_and_oversize() -> None:
    with pytest.raises(FrameError):
        protocol.encode({"t": "ready", "version": b"bytes"})
    with pytest.raises(FrameError):
        protocol.encode({"t": "ready", "version": float("nan")})
    with pytest.raises(protocol.FrameTooLargeError):
        protocol.encode({"t": "exec", "id": "a", "code": "x" * 2000}, max_frame=1000)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20) |
    st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=20)

agent_frames = st.one_of(
    st.builds(lambda c, f, a: {"t": "call", "call": c, "fn": f, "args": a, "kwargs": {}},
              st.integers(0, 2**53 - 1), st.text(min_size=1, max_size=128), st.lists(json_values,
                                                                                      max_size=3)),
    st.builds(lambda i, s, d: {"t": "output", "id": i, "stream": s, "data": d},
              st.text(min_size=1, max_size=64), st.sampled_from(["stdout", "stderr"]),
              st.text(max_size=200)),
    st.builds(lambda i, s, a: {"t": "result", "id": i, "status": s, "answer": a},
              st.text(min_size=1, max_size=64), st.sampled_from(["ok", "error", "interrupted"]),
              json_values),
)


@given(st.lists(agent_frames, max_size=5), st.integers(1, 50))
def test_frames_round_trip_in_any_chunking(frames: list[dict[str, object]], chunk: int) -> None:
    data = b"".join(protocol.encode(f) for f in frames)
    decoder = FrameDecoder(AGENT_FRAMES)
    out = []
    for start in range(0, len(data), chunk):
        decoder.feed(data[start:start + chunk])
        while (frame := decoder.next_frame()) is not None:
            out.append(frame)
    assert out == json.loads(json.dumps(frames))


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise_anything_but_frame_error(data: bytes) -> None:
    with contextlib.suppress(FrameError):
        decode_all(data, HOST_FRAMES | AGENT_FRAMES, cap=4096)
