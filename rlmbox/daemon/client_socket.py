"""The sync ``Client``'s exec sockets: kept WebSockets to ``GET /v1/exec/socket``.

The protocol is in ``daemon/exec_socket.py``. This is the client half of RFC 6455 that it
needs, on the standard library (the client must load with httpx alone): the upgrade, a
masked text frame per request written with one ``sendall``, and the daemon's unmasked
frames read back (pings answered, a close ending the socket).

Sockets are pooled like ``client_connection.py``'s connections: a call takes an idle one
(or opens one) and gives it back once its answer is read, so two threads never share
one; an idle socket the daemon closed is seen before reuse and replaced; a message is
never sent twice (one that fails after it left is the caller's error: an exec must not
run twice).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import socket
import struct
import threading
from typing import Any

from rlmbox.daemon.client_connection import (
    Answer,
    Endpoint,
    closed_by_peer,
    error_of,
    unreachable,
)
from rlmbox.daemon.wire import EXEC_SOCKET_PATH
from rlmbox.errors import DaemonError

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"   # RFC 6455 section 1.3
_TEXT, _CONTINUATION, _CLOSE, _PING, _PONG = 0x1, 0x0, 0x8, 0x9, 0xA
_MAX_MESSAGE_BYTES = 256 * 1024 * 1024   # the daemon is trusted; results can be large


class SocketClosed(Exception):
    """The daemon closed the socket or broke the framing."""


def _frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked client frame (clients must mask, RFC 6455 5.3)."""
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    mask = os.urandom(4)
    # one big-integer XOR masks the whole payload at C speed
    key = int.from_bytes((mask * (size // 4 + 1))[:size], "big")
    masked = (int.from_bytes(payload, "big") ^ key).to_bytes(size, "big")
    return head + mask + masked


class _Socket:
    """One upgraded connection; reads whole messages off a byte buffer."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = bytearray()

    def _take(self, count: int) -> bytes:
        while len(self._buffer) < count:
            chunk = self.sock.recv(max(65536, count - len(self._buffer)))
            if not chunk:
                raise SocketClosed("the daemon closed the exec socket")
            self._buffer += chunk
        taken = bytes(self._buffer[:count])
        del self._buffer[:count]
        return taken

    def send(self, payload: bytes) -> None:
        self.sock.sendall(_frame(_TEXT, payload))

    def receive(self) -> bytes:
        """The next text message's bytes, answering pings on the way."""
        parts: list[bytes] = []
        size = 0
        while True:
            first, second = self._take(2)
            opcode, length = first & 0x0F, second & 0x7F
            if second & 0x80:
                raise SocketClosed("the daemon sent a masked frame")
            if length == 126:
                (length,) = struct.unpack("!H", self._take(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", self._take(8))
            size += length
            if size > _MAX_MESSAGE_BYTES:
                raise SocketClosed("the daemon sent a message over the client's cap")
            payload = self._take(length)
            if opcode == _PING:
                self.sock.sendall(_frame(_PONG, payload))
                continue
            if opcode == _CLOSE:
                raise SocketClosed("the daemon closed the exec socket")
            if opcode in (_TEXT, _CONTINUATION):
                parts.append(payload)
                if first & 0x80:
                    return b"".join(parts)
            # a pong, or an opcode we never asked for: skipped


def _upgrade(endpoint: Endpoint, head: str, timeout: float) -> _Socket:
    """A connected socket switched to the WebSocket protocol, or the daemon's refusal
    as the exception its error answer names."""
    sock = endpoint.connect(timeout)
    try:
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        sock.sendall((f"GET {EXEC_SOCKET_PATH} HTTP/1.1\r\n{head}Upgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      "Sec-WebSocket-Version: 13\r\n\r\n").encode("ascii"))
        response = http.client.HTTPResponse(sock, method="GET")
        try:   # nothing follows the 101 until we send: the reader's buffer holds no frame
            response.begin()
            if response.status != 101:
                raise error_of(Answer(response.status, response.read(),
                                      response.getheader("Retry-After") or ""))
            # SHA-1 is what RFC 6455 prescribes for this handshake check, not for security
            accept = base64.b64encode(hashlib.sha1(key.encode("ascii") + _GUID,
                                                   usedforsecurity=False).digest())
            if (response.getheader("Sec-WebSocket-Accept") or "").encode() != accept:
                raise SocketClosed("the daemon's upgrade answer does not match the key")
        finally:
            response.close()
    except BaseException:
        sock.close()
        raise
    return _Socket(sock)


class ExecSockets:
    """Kept exec sockets to one daemon, as one bearer; thread-safe."""

    def __init__(self, endpoint: Endpoint, token: str, timeout: float) -> None:
        if not (token.isascii() and token.isprintable()):
            raise ValueError("a token is printable ASCII")   # no header injection
        self._endpoint = endpoint
        self._timeout = timeout
        self._head = (f"Host: {endpoint.host_header}\r\nAuthorization: Bearer {token}\r\n")
        self._idle: list[_Socket] = []
        self._lock = threading.Lock()
        self._closed = False
        self.opened = 0

    def exchange(self, message: dict[str, Any]) -> dict[str, Any]:
        """Sends one message and returns the daemon's answer to it.

        Raises:
            DaemonError: ``Unreachable`` when the daemon cannot be reached or the socket
                broke (the cell may or may not have run); the daemon's refusal of the
                upgrade as the exception it names.
            RuntimeError: the client was closed.
        """
        payload = json.dumps(message, ensure_ascii=False, separators=(",", ":"),
                             allow_nan=False).encode("utf-8")
        try:
            conn = self._take()
        except (OSError, http.client.HTTPException, SocketClosed) as exc:
            raise unreachable(exc) from exc
        try:
            conn.send(payload)
            answer = json.loads(conn.receive())
        except (OSError, SocketClosed, ValueError) as exc:
            conn.sock.close()
            raise unreachable(exc) from exc
        except BaseException:
            conn.sock.close()
            raise
        if not isinstance(answer, dict):
            conn.sock.close()
            raise DaemonError("the daemon answered on the exec socket without a JSON "
                              "object", type="BadResponse")
        self._give_back(conn)
        return answer

    def _take(self) -> _Socket:
        with self._lock:
            if self._closed:
                raise RuntimeError("the client is closed")
            while self._idle:
                conn = self._idle.pop()
                if not closed_by_peer(conn.sock):
                    return conn
                conn.sock.close()
        conn = _upgrade(self._endpoint, self._head, self._timeout)
        with self._lock:
            self.opened += 1
        return conn

    def _give_back(self, conn: _Socket) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(conn)
                return
        conn.sock.close()

    def close(self) -> None:
        """Closes the idle sockets; one in use is closed when its answer is read."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.sock.close()
