"""Frames over a container's attached stdio: the engine's multiplexed stream, demultiplexed.

Without a TTY the engine wraps everything the container writes in 8-byte headers (stream
id, three zero bytes, a big-endian length), so stdout (the agent's frames) and stderr
(its diagnostics) share one socket. The headers come from the engine, not the sandbox;
the payloads are hostile. Frames are capped by the decoder; stderr keeps only a bounded
tail, so neither stream can grow host memory. Writes to the socket reach stdin unwrapped.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections import deque
from typing import Any, Final

from rlmbox.errors import ProtocolError, SandboxCrashed
from rlmbox.sandboxes import protocol
from rlmbox.sandboxes.channel import FrameChannel
from rlmbox.sandboxes.protocol import Frame

_HEADER: Final = struct.Struct(">BxxxI")
_STDOUT: Final = 1
_STDERR: Final = 2
STDERR_TAIL_BYTES: Final = 16 * 1024


class AttachedStream(FrameChannel):
    """Host side of the protocol over one attach socket (hijacked HTTP connection)."""

    ended = "the container's output ended"
    closed = "the container closed its stdin"
    stalled = "the container stopped reading its input"

    def __init__(self, sock: socket.socket, max_frame: int = protocol.DEFAULT_MAX_FRAME,
                 wrappers: tuple[Any, ...] = ()) -> None:
        self._sock = sock
        self._wrappers = wrappers  # file objects over sock: the fd closes when they do
        self._sock.setblocking(False)
        super().__init__(sock.fileno(), sock.fileno(), max_frame)
        self._raw = bytearray()
        self._stderr: deque[bytes] = deque()
        self._stderr_len = 0

    @property
    def stderr_tail(self) -> str:
        """The last bytes the sandbox wrote to stderr (diagnostics for a failed start)."""
        return b"".join(self._stderr).decode("utf-8", errors="replace")

    def fileno(self) -> int:
        return self._sock.fileno()

    def read_available(self) -> Frame | None:
        """Reads what has arrived without waiting (stderr goes to the tail); returns a
        stdout frame if one is complete. Raises ``SandboxCrashed`` at end of stream.
        For the socket transport, where this stream only watches start-up."""
        self._read_some()
        frame = self._take()
        if frame is None and self._eof:
            raise SandboxCrashed(self.ended)
        return frame

    def _ingest(self, data: bytes) -> None:
        self._raw += data
        self._demux()

    def _demux(self) -> None:
        raw = self._raw
        offset = 0
        while len(raw) - offset >= _HEADER.size:
            kind, length = _HEADER.unpack_from(raw, offset)
            end = offset + _HEADER.size + length
            if kind == _STDOUT:
                # Feed partial payloads too: a frame may span many engine chunks.
                chunk_end = min(end, len(raw))
                self._decoder.feed(bytes(raw[offset + _HEADER.size:chunk_end]))
                if chunk_end < end:
                    # Rewrite the header to the bytes still owed, keep waiting.
                    _HEADER.pack_into(raw, offset, kind, end - chunk_end)
                    del raw[offset + _HEADER.size:chunk_end]
                    break
            elif kind == _STDERR:
                if end > len(raw):
                    break
                self._keep_stderr(bytes(raw[offset + _HEADER.size:end]))
            else:
                self._broken = True
                raise ProtocolError(f"unknown stream id {kind} from the engine")
            offset = end
        del raw[:offset]
        if len(raw) > self._max_frame + _HEADER.size:  # a stderr chunk cannot be this big
            self._broken = True
            raise ProtocolError("the engine's stream framing is out of sync")

    def _keep_stderr(self, data: bytes) -> None:
        self._stderr.append(data)
        self._stderr_len += len(data)
        while self._stderr_len > STDERR_TAIL_BYTES and len(self._stderr) > 1:
            self._stderr_len -= len(self._stderr.popleft())

    def close(self) -> None:
        super().close()
        for item in (*self._wrappers, self._sock):
            with contextlib.suppress(OSError, ValueError):  # already closed by a wrapper
                item.close()
