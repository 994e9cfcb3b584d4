"""Hostile review s15a, change 3 (6ed0dfe): ``engine._close_sockets_left_in`` closes every
``socket.socket`` it finds in the frames of a failed SDK call's exception chain.

The question: does it ever close a socket that is still in use? The chain it walks
includes ``__context__``, which Python sets to whatever exception was being *handled* when
the SDK raised: so a caller that connects from inside an ``except`` block hands over its
own frames (the one that raised what it handles), with their live sockets.

Fake engines only (a Unix socket or 127.0.0.1), no Docker engine needed."""

from __future__ import annotations

import gc
import json
import shutil
import socket
import tempfile
import threading
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from rlmbox.errors import SandboxUnavailable
from rlmbox.sandboxes.docker import engine

from .test_review_s8a import _UnixServer

pytest.importorskip("docker")


class _Engine(BaseHTTPRequestHandler):
    """An engine whose answer the server's ``status`` decides (200: a healthy one)."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        status = getattr(self.server, "status", 200)
        if status == 200:
            body = (b"OK" if self.path.endswith("/_ping")
                    else json.dumps({"ApiVersion": "1.41", "Version": "fake"}).encode())
        else:
            body = json.dumps({"message": "the engine failed"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return

    def address_string(self) -> str:
        return "unix"


def _serve(status: int) -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="rbx-", dir="/tmp"))
    path = directory / "engine.sock"
    server = _UnixServer(str(path), _Engine)
    server.status = status   # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def healthy_engine() -> Iterator[Path]:
    yield from _serve(200)


@pytest.fixture
def failing_engine() -> Iterator[Path]:
    """Answers every request with a 500: the socket is alive, the engine is not well."""
    yield from _serve(500)


@pytest.fixture
def silent_engine() -> Iterator[str]:
    """A TCP engine on 127.0.0.1 that accepts and never answers (a hung dockerd)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()
        for conn in accepted:
            conn.close()


def _is_open(sock: socket.socket) -> bool:
    return sock.fileno() != -1


def _resource_warnings(call: object) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        assert callable(call)
        call()
        gc.collect()
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


# -- what it must not close -----------------------------------------------------------------


def test_connecting_from_an_except_block_leaves_the_callers_socket_open(
        failing_engine: Path) -> None:
    """A caller retries the engine while it handles an error of its own; its connection to
    something else (a socketpair here: a sandbox's agent socket, a client's connection) is
    a local of the frame that raised. A failed connect must not close it."""
    mine, peer = socket.socketpair()
    try:
        def fail() -> None:
            raise RuntimeError("the caller's own failure, being handled")

        def handle_then_reconnect(live: socket.socket) -> None:
            try:
                fail()   # raised through this frame, which holds ``live``
            except RuntimeError:
                with pytest.raises(SandboxUnavailable):
                    engine.connect(f"unix://{failing_engine}", timeout=5)

        handle_then_reconnect(mine)
        assert _is_open(mine), "connect() closed a socket its caller still uses"
        mine.sendall(b"still mine")
        assert peer.recv(16) == b"still mine"
    finally:
        mine.close()
        peer.close()


def test_a_failed_connect_beside_a_working_client_leaves_that_client_working(
        healthy_engine: Path, failing_engine: Path, silent_engine: str) -> None:
    """Another thread's client (its pooled connection open between calls) is untouched by
    connects that fail for every reason: a 500, a hung engine, an engine that is gone."""
    client = engine.connect(f"unix://{healthy_engine}", timeout=5)
    gone = failing_engine.with_name("gone.sock")
    failures: list[str] = []
    stop = threading.Event()

    def fail_repeatedly() -> None:
        while not stop.is_set():
            for url, timeout in ((f"unix://{failing_engine}", 5.0), (silent_engine, 1.0),
                                 (f"unix://{gone}", 5.0)):
                try:
                    engine.connect(url, timeout=timeout).close()
                    failures.append(f"{url} connected")
                except SandboxUnavailable:
                    pass

    thread = threading.Thread(target=fail_repeatedly, daemon=True)
    thread.start()
    try:
        for _ in range(100):
            assert client.ping()
    finally:
        stop.set()
        thread.join(30)
        client.close()
    assert failures == []


# -- what it must close ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["500", "silent", "gone"])
def test_a_connect_that_fails_for_any_reason_leaves_nothing_open(
        kind: str, failing_engine: Path, silent_engine: str) -> None:
    url = {"500": f"unix://{failing_engine}", "silent": silent_engine,
           "gone": f"unix://{failing_engine.with_name('gone.sock')}"}[kind]

    def refused() -> None:
        with pytest.raises(SandboxUnavailable, match="no Docker engine answers"):
            engine.connect(url, timeout=1)

    assert _resource_warnings(refused) == []
