"""A TEST DOUBLE of Anthropic's cloud Messages API and of an OpenAI-compatible server.

This machine cannot reach Anthropic, so the providers are tested over real HTTP on real
sockets against this local server on 127.0.0.1 (``http.server`` in a thread). It plays
the documented request/response shapes: ``POST /v1/messages`` (x-api-key and
anthropic-version headers, ``content`` text blocks, ``usage.input_tokens`` /
``output_tokens``, ``{"type": "error", "error": {...}}`` bodies) and
``POST /v1/chat/completions`` (bearer key, ``choices[0].message.content``,
``usage.prompt_tokens`` / ``completion_tokens``). Tests queue :class:`Reply` objects to
play failures (429 with retry-after, 500s, hangs, oversize bodies); with none queued it
answers correctly, and refuses a wrong key with 401 as the real API does.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ANTHROPIC_VERSION = "2023-06-01"


@dataclass
class Reply:
    """One scripted response. ``hang`` never answers (until the server stops);
    ``chunked`` sends the body without a content-length."""

    status: int = 200
    body: bytes | dict[str, Any] = b""
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False
    chunked: bool = False


@dataclass
class Seen:
    """A request as the server received it."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class FakeLMServer:
    """Serves on 127.0.0.1:<free port> until ``stop``. Thread-safe bookkeeping."""

    def __init__(self, key: str | None,
                 answer: Callable[[str], str] = lambda prompt: f"answer to: {prompt}") -> None:
        self.key = key
        self.answer = answer
        self.queue: list[Reply] = []
        self.seen: list[Seen] = []
        self.problems: list[str] = []   # header checks the server made, failed
        self._lock = threading.Lock()
        self._release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                server._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def push(self, *replies: Reply) -> None:
        with self._lock:
            self.queue.extend(replies)

    def stop(self) -> None:
        self._release.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    # --- the handler -------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("content-length", "0"))
        raw = h.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            body = {}
        headers = {k.lower(): v for k, v in h.headers.items()}
        with self._lock:
            self.seen.append(Seen(h.path, headers, body))
            scripted = self.queue.pop(0) if self.queue else None
        if scripted is None:
            scripted = self._correct(h.path, headers, body)
        if scripted.hang:
            self._release.wait(60)
            return
        data = scripted.body if isinstance(scripted.body, bytes) else \
            json.dumps(scripted.body).encode()
        h.send_response(scripted.status)
        for name, value in scripted.headers.items():
            h.send_header(name, value)
        if scripted.chunked:
            h.send_header("transfer-encoding", "chunked")
            h.end_headers()
            for start in range(0, len(data), 65536):
                piece = data[start:start + 65536]
                h.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            h.wfile.write(b"0\r\n\r\n")
            return
        h.send_header("content-type", "application/json")
        h.send_header("content-length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _correct(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> Reply:
        """What the real API would answer to this request."""
        prompt = str(body.get("messages", [{}])[0].get("content", ""))
        text = self.answer(prompt)
        if path == "/v1/messages":
            if headers.get("anthropic-version") != ANTHROPIC_VERSION:
                self._problem(f"anthropic-version was {headers.get('anthropic-version')!r}")
                return _anthropic_error(400, "invalid_request_error", "bad version header")
            if self.key is None or headers.get("x-api-key") != self.key:
                self._problem("x-api-key missing or wrong")
                return _anthropic_error(401, "authentication_error", "invalid x-api-key")
            return Reply(200, {
                "id": "msg_test", "type": "message", "role": "assistant",
                "model": body.get("model"), "stop_reason": "end_turn",
                "content": [{"type": "text", "text": text}],
                "usage": {"input_tokens": len(prompt), "output_tokens": len(text)}})
        if path == "/v1/chat/completions":
            expected = f"Bearer {self.key}" if self.key else None
            if headers.get("authorization") != expected:
                self._problem("authorization header missing or wrong")
                return Reply(401, {"error": {"type": "invalid_request_error",
                                             "message": "Incorrect API key provided"}})
            return Reply(200, {
                "id": "chatcmpl-test", "object": "chat.completion",
                "model": body.get("model"),
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": len(prompt), "completion_tokens": len(text),
                          "total_tokens": len(prompt) + len(text)}})
        self._problem(f"unknown path {path}")
        return Reply(404, {"error": {"type": "not_found_error", "message": path}})

    def _problem(self, text: str) -> None:
        with self._lock:
            self.problems.append(text)


class _QuietServer(ThreadingHTTPServer):
    """Clients hanging up mid-response (size-cap and timeout tests) are expected."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


def _anthropic_error(status: int, kind: str, message: str) -> Reply:
    return Reply(status, {"type": "error", "error": {"type": kind, "message": message}})


def serve(key: str | None, **kwargs: Any) -> Iterator[FakeLMServer]:
    """For fixtures: a running server, stopped afterwards."""
    server = FakeLMServer(key, **kwargs)
    try:
        yield server
    finally:
        server.stop()
