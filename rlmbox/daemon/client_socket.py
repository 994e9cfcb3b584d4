"""The sync ``Client``'s exec sockets: kept WebSockets to ``GET /v1/exec/socket``.

The protocol is in ``daemon/exec_socket.py``. This is its client, on the standard library
(the client must load with httpx alone): the upgrade, then a masked text frame per request
written with one ``sendall`` and the answer read back (``ws_frames.py``).

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
from rlmbox.daemon.ws_frames import TEXT, FrameSocket, SocketClosed
from rlmbox.errors import DaemonError

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"   # RFC 6455 section 1.3
_MAX_MESSAGE_BYTES = 256 * 1024 * 1024   # the daemon is trusted; results can be large


def _upgrade(endpoint: Endpoint, head: str, timeout: float) -> FrameSocket:
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
    return FrameSocket(sock, client=True, limit=_MAX_MESSAGE_BYTES)


class ExecSockets:
    """Kept exec sockets to one daemon, as one bearer; thread-safe."""

    def __init__(self, endpoint: Endpoint, token: str, timeout: float) -> None:
        if not (token.isascii() and token.isprintable()):
            raise ValueError("a token is printable ASCII")   # no header injection
        self._endpoint = endpoint
        self._timeout = timeout
        self._head = (f"Host: {endpoint.host_header}\r\nAuthorization: Bearer {token}\r\n")
        self._idle: list[FrameSocket] = []
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
            conn.send(TEXT, payload)
            answer = json.loads(conn.receive()[1])
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

    def _take(self) -> FrameSocket:
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

    def _give_back(self, conn: FrameSocket) -> None:
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
