"""The sync ``Client``'s HTTP/1.1: kept-alive connections, each request in one write.

A trivial cell through the daemon cost about 1 ms more with httpx than with a plain
socket (``benchmarks/bench_daemon.py``): httpx's layers (client, httpcore, h11) are
Python on every request, and it writes the headers and the body in two writes, so the
daemon's event loop wakes twice per request. Here the request is composed once and sent
with one ``sendall``; the answer is read by the standard library's ``HTTPResponse``.

Connections are pooled: a request takes an idle one (or opens one) and gives it back once
its answer is read whole, so a second thread (``interrupt`` while another runs ``exec``)
gets its own. An idle connection the daemon has closed (its keep-alive timeout) is seen
before reuse and replaced. A request is never sent twice: one that fails after it left
is the caller's error (an ``exec`` must not run twice).
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

from rlmbox.errors import DaemonError

UNIX_HOST = "rlmbox"
CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Answer:
    """What the client reads of a response: the status, the body, ``Retry-After``."""

    status: int
    content: bytes
    retry_after: str = ""


@dataclass(frozen=True)
class Endpoint:
    """Where the daemon listens: a Unix socket path, or an ``http(s)://host:port`` URL."""

    unix_path: str | None
    host: str
    port: int
    tls: bool

    @classmethod
    def of(cls, socket_path: str | Path | None, url: str | None) -> Endpoint:
        if socket_path is not None:
            return cls(str(socket_path), UNIX_HOST, 0, tls=False)
        parts = urlsplit(url or "")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url must be http://host:port or https://host:port, not {url!r}")
        tls = parts.scheme == "https"
        return cls(None, parts.hostname, parts.port or (443 if tls else 80), tls)

    @property
    def host_header(self) -> str:
        return self.host if self.unix_path is not None or self.port in (80, 443) \
            else f"{self.host}:{self.port}"

    def connect(self, timeout: float) -> socket.socket:
        """A connected socket that waits at most ``timeout`` for each read or write."""
        if self.unix_path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(CONNECT_TIMEOUT_S)
                sock.connect(self.unix_path)
            except BaseException:
                sock.close()
                raise
        else:
            sock = socket.create_connection((self.host, self.port), CONNECT_TIMEOUT_S)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls:
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=self.host)
        sock.settimeout(timeout)
        return sock


def _closed_by_peer(sock: socket.socket) -> bool:
    """An idle keep-alive connection is readable only when the daemon closed it (or sent
    what no request asked for): either way it is not reused."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class ConnectionPool:
    """Kept-alive connections to one daemon, as one bearer; thread-safe."""

    def __init__(self, endpoint: Endpoint, token: str, timeout: float) -> None:
        if not (token.isascii() and token.isprintable()):
            raise ValueError("a token is printable ASCII")   # no header injection
        self._endpoint = endpoint
        self._timeout = timeout
        self._head = (f"Host: {endpoint.host_header}\r\nAuthorization: Bearer {token}\r\n"
                      "Accept: application/json\r\n")
        self._idle: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False

    def request(self, method: str, path: str, params: dict[str, object] | None,
                body: bytes | None, content_type: str) -> Answer:
        """Sends one request in one write and reads its answer whole.

        Raises:
            DaemonError: ``Unreachable``, when the daemon cannot be reached or the
                connection broke (the request may or may not have run).
            RuntimeError: the client was closed.
        """
        target = quote(path, safe="/")
        if params:
            target += "?" + urlencode(params)
        head = f"{method} {target} HTTP/1.1\r\n{self._head}"
        if body is not None:
            head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        elif method in ("POST", "PUT"):
            head += "Content-Length: 0\r\n"
        message = (head + "\r\n").encode("ascii") + (body or b"")
        try:
            sock = self._take()
        except OSError as exc:
            raise unreachable(exc) from exc
        response = http.client.HTTPResponse(sock, method=method)
        try:
            sock.sendall(message)
            response.begin()
            content = response.read()
        except (OSError, http.client.HTTPException) as exc:
            sock.close()
            raise unreachable(exc) from exc
        except BaseException:
            sock.close()
            raise
        finally:
            response.close()   # its reader only: the socket stays open for reuse
        if response.will_close:
            sock.close()
        else:
            self._give_back(sock)
        return Answer(response.status, content, response.getheader("Retry-After") or "")

    def _take(self) -> socket.socket:
        with self._lock:
            if self._closed:
                raise RuntimeError("the client is closed")
            while self._idle:
                sock = self._idle.pop()
                if not _closed_by_peer(sock):
                    return sock
                sock.close()
        return self._endpoint.connect(self._timeout)

    def _give_back(self, sock: socket.socket) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(sock)
                return
        sock.close()

    def close(self) -> None:
        """Closes the idle connections; one in use is closed when its answer is read."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for sock in idle:
            sock.close()


def unreachable(exc: BaseException) -> DaemonError:
    """A transport failure, as both clients report it."""
    return DaemonError(f"cannot reach the rlmbox daemon: {exc}", type="Unreachable")
