"""The sync Client's connections (client_connection.py): kept alive, one write per
request, replaced when the daemon closed them, never re-sending a request."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rlmbox.daemon.client import Client
from rlmbox.errors import DaemonError

from .conftest import RunningDaemon

FAKE_TOKEN = "rbx.t-1.secret"  # noqa: S105 - the fake daemon checks no token
OK = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 34\r\n\r\n"
      b'{"sessions":[],"next_before":null}')


class _CountingSocket(socket.socket):
    """Records each write of a socket the client connected (not the daemon's)."""

    writes: list[int]

    def connect(self, address: Any) -> None:
        self.writes = []
        _CLIENT_SOCKETS.append(self)
        super().connect(address)

    def sendall(self, data: Any, flags: int = 0) -> None:
        if hasattr(self, "writes"):
            self.writes.append(len(data))
        super().sendall(data, flags)

    def send(self, data: Any, flags: int = 0) -> int:
        if hasattr(self, "writes"):
            self.writes.append(len(data))
        return super().send(data, flags)


_CLIENT_SOCKETS: list[_CountingSocket] = []


def test_each_request_goes_out_in_one_write_on_one_kept_alive_connection(
        daemon: RunningDaemon, monkeypatch: pytest.MonkeyPatch) -> None:
    """Headers and body in one write, so the daemon's event loop wakes once per request,
    and one connection for all of them."""
    token = daemon.token("alice")
    _CLIENT_SOCKETS.clear()
    monkeypatch.setattr(socket, "socket", _CountingSocket)
    with Client(socket=daemon.socket, token=token) as client:
        session = client.create_session()["id"]
        for _ in range(3):
            assert client.exec(session, "x = 1").status == "ok"
        client.close_session(session)
    assert len(_CLIENT_SOCKETS) == 1
    assert len(_CLIENT_SOCKETS[0].writes) == 5   # create, three execs, close: one write each


def _serve(path: Path, answer: Callable[[socket.socket, bytes], None],
           connections: int) -> tuple[threading.Thread, list[bytes], threading.Semaphore]:
    """A fake daemon: reads one request per accepted connection, calls ``answer``, then
    closes the connection and releases the semaphore."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(4)
    requests: list[bytes] = []
    closed = threading.Semaphore(0)

    def run() -> None:
        with listener:
            for _ in range(connections):
                conn, _ = listener.accept()
                with conn:
                    conn.settimeout(10)
                    request = conn.recv(65536)
                    requests.append(request)
                    answer(conn, request)
                closed.release()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, requests, closed


@pytest.fixture
def fake_socket(sock_dir: Path) -> Path:
    return sock_dir / "fake.sock"


def test_a_connection_the_daemon_closed_while_idle_is_replaced(fake_socket: Path) -> None:
    """The daemon closes idle keep-alive connections; the next request opens a new one
    instead of failing."""
    thread, requests, closed = _serve(fake_socket, lambda conn, _: conn.sendall(OK),
                                      connections=2)
    with Client(socket=fake_socket, token=FAKE_TOKEN) as client:
        assert client.sessions() == []
        assert closed.acquire(timeout=10)   # the fake closed the kept-alive connection
        assert client.sessions() == []
    thread.join(10)
    assert len(requests) == 2


def test_a_request_is_not_sent_again_when_the_connection_breaks(fake_socket: Path) -> None:
    """A request that left is never re-sent (an exec must not run twice): the caller
    hears that the daemon was unreachable."""
    thread, requests, _ = _serve(fake_socket, lambda conn, _: None, connections=1)
    with Client(socket=fake_socket, token=FAKE_TOKEN) as client, \
            pytest.raises(DaemonError) as info:
        client.exec("s-1", "x = 1")
    thread.join(10)
    assert info.value.type == "Unreachable"
    assert len(requests) == 1
    assert requests[0].startswith(b"POST /v1/sessions/s-1/exec HTTP/1.1\r\n")
    assert requests[0].endswith(b'{"code":"x = 1"}')


def test_a_token_that_would_inject_a_header_is_refused() -> None:
    with pytest.raises(ValueError, match="printable ASCII"):
        Client(socket="/nonexistent", token=FAKE_TOKEN + "\r\nX-Tenant: bob")


def test_a_closed_client_sends_nothing(fake_socket: Path) -> None:
    client = Client(socket=fake_socket, token=FAKE_TOKEN)
    client.close()
    with pytest.raises(RuntimeError, match="closed"):
        client.sessions()
