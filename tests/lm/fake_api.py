"""A TEST DOUBLE of Anthropic's cloud Messages API and of an OpenAI-compatible server.

This machine cannot reach Anthropic, so the unmodified SDKs are pointed (base URL) at
this local server on 127.0.0.1 (``http.server`` in a thread) and tested over real
sockets. It plays the documented request/response shapes, written from the published
API references, not from the SDKs:

- ``POST /v1/messages``: the key (x-api-key or a bearer token), anthropic-version,
  a ``system`` string or text blocks, ``content`` text blocks, ``usage.input_tokens`` /
  ``output_tokens`` and, with ``cache_control`` breakpoints, ``cache_creation_input_tokens`` /
  ``cache_read_input_tokens`` (a prefix up to a breakpoint seen before is read from the
  cache; ``input_tokens`` counts only what follows the last cache hit or write);
  ``"stream": true`` answers as server-sent events (message_start, content_block_*,
  message_delta with the output tokens, message_stop);
  ``{"type": "error", "error": {...}}`` bodies;
- ``POST /v1/messages/count_tokens``: ``{"input_tokens": N}``;
- ``POST /v1/chat/completions``: bearer key, ``choices[0].message.content``,
  ``usage.prompt_tokens`` / ``completion_tokens`` and
  ``prompt_tokens_details.cached_tokens`` (the longest earlier prompt that prefixes this
  one: automatic caching); ``"stream": true`` answers as chunks, the usage in the last.

One character is one token. Tests queue :class:`Reply` objects to play failures (429 or
529 with retry-after, 500s, a redirect, hangs, a slow body, oversize bodies); with none
queued it answers correctly, and refuses a wrong key with 401 as the real API does.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}$")   # anthropic-version is a date


@dataclass
class Reply:
    """One scripted response. ``hang`` never answers (until the server stops);
    ``chunked`` sends the body without a content-length; ``slow`` sends it in 16-byte
    pieces that many seconds apart."""

    status: int = 200
    body: bytes | dict[str, Any] = b""
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False
    chunked: bool = False
    slow: float = 0.0


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
        self.arrivals: list[float] = []   # time.monotonic() of each request
        self._cached: set[str] = set()   # Anthropic prompt prefixes up to a breakpoint
        self._prompts: list[str] = []    # earlier chat prompts (automatic caching)
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
            self.arrivals.append(time.monotonic())
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
        if scripted.slow:
            h.send_header("content-type", "application/json")
            h.send_header("content-length", str(len(data)))
            h.end_headers()
            for start in range(0, len(data), 16):
                h.wfile.write(data[start:start + 16])
                h.wfile.flush()
                if self._release.wait(scripted.slow):
                    return
            return
        if scripted.chunked:
            h.send_header("transfer-encoding", "chunked")
            h.end_headers()
            for start in range(0, len(data), 65536):
                piece = data[start:start + 65536]
                h.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            h.wfile.write(b"0\r\n\r\n")
            return
        h.send_header("content-type", scripted.headers.get("content-type",
                                                           "application/json"))
        h.send_header("content-length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _correct(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> Reply:
        """What the real API would answer to this request."""
        if path.startswith("/v1/messages"):
            refused = self._anthropic_refusal(headers)
            if refused is not None:
                return refused
            pieces = _anthropic_pieces(body)
            prompt = "".join(text for text, _ in pieces)
            if path == "/v1/messages/count_tokens":
                return Reply(200, {"input_tokens": len(prompt)})
            if path == "/v1/messages":
                return self._anthropic_reply(body, pieces, prompt)
        if path == "/v1/chat/completions":
            expected = f"Bearer {self.key}" if self.key else None
            if headers.get("authorization") != expected:
                self._problem("authorization header missing or wrong")
                return Reply(401, {"error": {"type": "invalid_request_error",
                                             "message": "Incorrect API key provided"}})
            return self._chat_reply(body)
        self._problem(f"unknown path {path}")
        return Reply(404, {"error": {"type": "not_found_error", "message": path}})

    def _anthropic_refusal(self, headers: dict[str, str]) -> Reply | None:
        if not API_VERSION.match(headers.get("anthropic-version", "")):
            self._problem(f"anthropic-version was {headers.get('anthropic-version')!r}")
            return _anthropic_error(400, "invalid_request_error", "bad version header")
        if self.key is None or sent_key(headers) != self.key:
            self._problem("x-api-key missing or wrong")
            return _anthropic_error(401, "authentication_error", "invalid x-api-key")
        return None

    def _anthropic_reply(self, body: dict[str, Any], pieces: list[tuple[str, bool]],
                         prompt: str) -> Reply:
        text = self.answer(prompt)
        written, read = self._cache(pieces)
        usage = {"input_tokens": len(prompt) - written - read, "output_tokens": len(text),
                 "cache_creation_input_tokens": written, "cache_read_input_tokens": read}
        if not body.get("stream"):
            return Reply(200, {
                "id": "msg_test", "type": "message", "role": "assistant",
                "model": body.get("model"), "stop_reason": "end_turn",
                "content": [{"type": "text", "text": text}], "usage": usage})
        start: dict[str, Any] = {"type": "message_start", "message": {
            "id": "msg_test", "type": "message", "role": "assistant",
            "model": body.get("model"), "content": [], "stop_reason": None,
            "usage": {**usage, "output_tokens": 1}}}
        events = [start, {"type": "content_block_start", "index": 0,
                          "content_block": {"type": "text", "text": ""}}]
        events += [{"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": piece}}
                   for piece in _split(text)]
        events += [{"type": "content_block_stop", "index": 0},
                   {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                    "usage": {"output_tokens": len(text)}},
                   {"type": "message_stop"}]
        return _sse(b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode()
                             for e in events))

    def _cache(self, pieces: list[tuple[str, bool]]) -> tuple[int, int]:
        """(written, read): the longest prefix ending at a block boundary, up to the last
        breakpoint, that an earlier breakpoint cached is read (the API looks back from a
        breakpoint for earlier cache entries); the rest up to the last breakpoint is
        written."""
        boundaries, marked, prefix = [], [], ""
        for text, is_marked in pieces:
            prefix += text
            boundaries.append(prefix)
            if is_marked:
                marked.append(prefix)
        if not marked:
            return 0, 0
        with self._lock:
            read = max((len(p) for p in boundaries
                        if p in self._cached and len(p) <= len(marked[-1])), default=0)
            self._cached.update(marked)
        return len(marked[-1]) - read, read

    def _chat_reply(self, body: dict[str, Any]) -> Reply:
        prompt = "".join(str(m.get("content", "")) for m in body.get("messages", []))
        text = self.answer(prompt)
        with self._lock:
            cached = max((len(p) for p in self._prompts if prompt.startswith(p)), default=0)
            self._prompts.append(prompt)
        usage = {"prompt_tokens": len(prompt), "completion_tokens": len(text),
                 "total_tokens": len(prompt) + len(text),
                 "prompt_tokens_details": {"cached_tokens": cached}}
        if not body.get("stream"):
            return Reply(200, {
                "id": "chatcmpl-test", "object": "chat.completion",
                "model": body.get("model"),
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}],
                "usage": usage})
        base = {"id": "chatcmpl-test", "object": "chat.completion.chunk",
                "model": body.get("model")}
        chunks = [{**base, "choices": [{"index": 0, "delta": {"content": piece},
                                        "finish_reason": None}]} for piece in _split(text)]
        chunks.append({**base, "choices": [], "usage": usage})
        return _sse(b"".join(f"data: {json.dumps(c)}\n\n".encode() for c in chunks)
                    + b"data: [DONE]\n\n")

    def _problem(self, text: str) -> None:
        with self._lock:
            self.problems.append(text)


class _QuietServer(ThreadingHTTPServer):
    """Clients hanging up mid-response (size-cap and timeout tests) are expected."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


def sent_key(headers: dict[str, str]) -> str | None:
    """The key a request carried: ``x-api-key``, or ``authorization: Bearer`` (both are
    accepted by the Messages API; the 2.x SDK sends the second)."""
    bearer = headers.get("authorization", "")
    return headers.get("x-api-key") or (bearer[7:] if bearer.startswith("Bearer ") else None)


def _anthropic_pieces(body: dict[str, Any]) -> list[tuple[str, bool]]:
    """The prompt's text pieces in order (system, then messages), each with whether a
    ``cache_control`` breakpoint ends it."""
    pieces: list[tuple[str, bool]] = []

    def add(content: Any) -> None:
        if isinstance(content, str):
            pieces.append((content, False))
        elif isinstance(content, list):
            pieces.extend((str(block.get("text", "")), "cache_control" in block)
                          for block in content if isinstance(block, dict))

    add(body.get("system", ""))
    for message in body.get("messages", []):
        add(message.get("content", "") if isinstance(message, dict) else "")
    return pieces


def _split(text: str) -> list[str]:
    return [text[i:i + 5] for i in range(0, len(text), 5)] or [""]


def _sse(data: bytes) -> Reply:
    return Reply(200, data, headers={"content-type": "text/event-stream"})


def _anthropic_error(status: int, kind: str, message: str) -> Reply:
    return Reply(status, {"type": "error", "error": {"type": kind, "message": message}})


def serve(key: str | None, **kwargs: Any) -> Iterator[FakeLMServer]:
    """For fixtures: a running server, stopped afterwards."""
    server = FakeLMServer(key, **kwargs)
    try:
        yield server
    finally:
        server.stop()
