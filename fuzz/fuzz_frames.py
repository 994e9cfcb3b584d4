"""Atheris target: the frame decoder, fed hostile byte streams as a sandbox would send them.

Input layout: the first byte picks how the stream is cut into reads (1..256 bytes, or all
at once), the rest is the stream. Invariants, for every input:

- the decoder raises nothing but ``FrameError`` (a crash is any other exception, a hang or
  a memory blow-up);
- after a ``FrameError`` the caller stops, as the host does;
- every frame it returns validates, is of an agent-to-host type, and survives
  ``encode`` -> ``decode_body`` unchanged.

Run: ``fuzz/run.sh`` (all targets) or ``python fuzz/fuzz_frames.py fuzz/corpus/frames``.
Replayed by tests/security/test_fuzz_regressions.py.
"""

from __future__ import annotations

import sys

from rlmbox.sandboxes import protocol

MAX_FRAME = 4096   # small, so over-cap lengths are common


def TestOneInput(data: bytes) -> None:  # the name atheris and libFuzzer use
    if not data:
        return
    step = data[0] or len(data)
    stream = data[1:]
    decoder = protocol.FrameDecoder(protocol.AGENT_FRAMES, MAX_FRAME)
    for start in range(0, len(stream), step):
        decoder.feed(stream[start:start + step])
        while True:
            try:
                frame = decoder.next_frame()
            except protocol.FrameError:
                return   # the stream is broken: the host stops reading it
            if frame is None:
                break
            _check(frame)


def _check(frame: protocol.Frame) -> None:
    assert frame["t"] in protocol.AGENT_FRAMES, frame
    protocol.validate(frame, protocol.AGENT_FRAMES)
    encoded = protocol.encode(frame, 1 << 30)
    again = protocol.decode_body(encoded[protocol.HEADER.size:], protocol.AGENT_FRAMES)
    assert again == frame, (frame, again)


def main() -> None:
    import atheris  # noqa: PLC0415 - only the fuzzing run needs it, not the replay test

    atheris.instrument_all()
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
