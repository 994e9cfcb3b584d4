"""The part of RFC 6455 the exec socket needs, over a blocking socket, stdlib only.

Both ends of ``GET /v1/exec/socket`` use it once the upgrade is done: the client
(``client_socket.py``) masks what it sends, as a client must; the daemon's socket thread
(``exec_socket.py``) refuses an unmasked client frame. A text message may come in
fragments; pings are answered, pongs skipped, a close ends the socket. A message over the
reader's cap ends it too (the daemon's cap is its request body cap).
"""

from __future__ import annotations

import os
import socket
import struct

TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
CLOSE_POLICY, CLOSE_TOO_BIG, CLOSE_PROTOCOL = 1008, 1009, 1002


class SocketClosed(Exception):
    """The other end closed the socket, broke the framing, or sent too much."""

    def __init__(self, message: str, code: int = CLOSE_PROTOCOL) -> None:
        super().__init__(message)
        self.code = code


def frame(opcode: int, payload: bytes, *, masked: bool) -> bytes:
    """One final frame; a client's is masked (RFC 6455 5.3)."""
    size = len(payload)
    bit = 0x80 if masked else 0
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, bit | size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, bit | 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, bit | 127, size)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + _unmask(payload, mask)


def _unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR with the repeated mask (its own inverse): one big-integer XOR, at C speed."""
    size = len(payload)
    key = int.from_bytes((mask * (size // 4 + 1))[:size], "big")
    return (int.from_bytes(payload, "big") ^ key).to_bytes(size, "big")


class FrameSocket:
    """One upgraded connection: whole messages in, one write per message out."""

    def __init__(self, sock: socket.socket, *, client: bool, limit: int) -> None:
        self.sock = sock
        self._client = client   # a client masks what it sends; a server expects masks
        self._limit = limit
        self._buffer = bytearray()

    def _take(self, count: int) -> bytes:
        while len(self._buffer) < count:
            chunk = self.sock.recv(max(65536, count - len(self._buffer)))
            if not chunk:
                raise SocketClosed("the other end closed the socket")
            self._buffer += chunk
        taken = bytes(self._buffer[:count])
        del self._buffer[:count]
        return taken

    def send(self, opcode: int, payload: bytes) -> None:
        self.sock.sendall(frame(opcode, payload, masked=self._client))

    def receive(self) -> tuple[int, bytes]:
        """The next data message: ``(TEXT or BINARY, its bytes)``.

        Raises:
            SocketClosed: a close frame, the end of the stream, a frame masked the wrong
                way, or a message over the cap (``code`` says which close fits).
            OSError: the socket failed.
        """
        parts: list[bytes] = []
        kind, size = None, 0
        while True:
            first, second = self._take(2)
            opcode, length = first & 0x0F, second & 0x7F
            if bool(second & 0x80) == self._client:
                raise SocketClosed("a frame masked the wrong way for its direction")
            if length == 126:
                (length,) = struct.unpack("!H", self._take(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", self._take(8))
            if opcode in (TEXT, BINARY, CONTINUATION) and size + length > self._limit:
                raise SocketClosed(f"a message over {self._limit} bytes", CLOSE_TOO_BIG)
            if length > 125 and opcode >= CLOSE:
                raise SocketClosed("a control frame over 125 bytes")
            mask = b"" if self._client else self._take(4)
            payload = self._take(length)
            if mask:
                payload = _unmask(payload, mask)
            if opcode == PING:
                self.send(PONG, payload)
            elif opcode == CLOSE:
                raise SocketClosed("the other end closed the socket")
            elif (opcode in (TEXT, BINARY) and kind is None) or \
                    (opcode == CONTINUATION and kind is not None):
                kind = kind if kind is not None else opcode
                parts.append(payload)
                size += length
                if first & 0x80:
                    return kind, b"".join(parts)
            elif opcode != PONG:
                raise SocketClosed(f"an unexpected frame (opcode {opcode})")

    def close(self, code: int, reason: bytes = b"") -> None:
        """Sends a close frame (if the socket still takes one) and closes the socket."""
        try:
            self.send(CLOSE, struct.pack("!H", code) + reason[:120])
        except OSError:
            pass
        finally:
            self.sock.close()
