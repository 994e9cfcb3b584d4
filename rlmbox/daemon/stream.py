"""``GET /v1/sessions/{id}/exec/stream``: one cell over a WebSocket, output as it happens.

Protocol: after the upgrade the client sends one text message, the same JSON object as
the body of ``POST .../exec`` (``{"code", "timeout_s"?}``, and ``"root_text"?``). The
server answers with ``{"type": "output", "stream", "data"}`` messages while the cell runs,
and, when ``root_text`` is true, ``{"type": "root_text", "session", "depth", "data"}``
messages as the root model of an ``rlm_query`` child the cell started streams its reply
(opt-in: those pieces share the relay's bound with the output), then one
``{"type": "result", ...}`` (the JSON of ``POST .../exec`` plus ``stream_dropped``) and
closes normally. While the cell runs the client may send ``{"type": "interrupt"}``: the
cell is interrupted as by ``POST .../interrupt`` (other messages are ignored). A bad
request message gets ``{"type": "error", "error": {"type",
"message"}}`` and a close with 1008 (policy violation); an oversized one a close with 1009.

The output pieces are the session's own ``on_output`` pieces (already capped per cell by
the policy) and the root text pieces its ``on_root_text`` ones (each child completion is
bounded by its ``max_tokens``, and metered and audited as without streaming); this module
only carries them from the exec thread to the event loop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from rlmbox.daemon import models as m
from rlmbox.daemon.validation import parse_body
from rlmbox.daemon.wire import INVALID_REQUEST, error_body, result_json, status_for
from rlmbox.errors import DaemonError, RlmboxError
from rlmbox.runtime.results import ExecResult

FIRST_MESSAGE_TIMEOUT_S = 60.0
RELAY_LIMIT_CHARS = 1024 * 1024
Send = Callable[[dict[str, Any]], Awaitable[None]]


class OutputRelay:
    """Output and root-text pieces from the exec thread to the socket, at most ``limit``
    chars queued.

    When the client reads more slowly than the cell prints, pieces are dropped rather
    than blocking the exec thread: a blocked exec thread would stop reading the sandbox's
    frames (host calls, the result, its own deadline) for as long as the slowest client
    wished, and the result carries the whole capped output anyway. After the first drop
    nothing more is relayed for the cell, so what a client received is always a prefix of
    each stream; ``dropped`` counts the pieces it did not get.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int = RELAY_LIMIT_CHARS) -> None:
        self._loop = loop
        self._limit = limit
        self._pieces: collections.deque[tuple[dict[str, Any], int]] = collections.deque()
        self._size = 0
        self._wake = asyncio.Event()
        self._done = False
        self.dropped = 0

    def offer(self, stream: str, text: str) -> None:
        """The session's ``on_output``; runs on the exec thread, never blocks."""
        self._loop.call_soon_threadsafe(
            self._put, {"type": "output", "stream": stream, "data": text}, len(text))

    def offer_root_text(self, session: str, depth: int, text: str) -> None:
        """The session's ``on_root_text``; runs on a call's thread, never blocks."""
        self._loop.call_soon_threadsafe(self._put, {
            "type": "root_text", "session": session, "depth": depth, "data": text}, len(text))

    def _put(self, message: dict[str, Any], size: int) -> None:
        if self.dropped or self._size + size > self._limit:
            self.dropped += 1
            return
        self._pieces.append((message, size))
        self._size += size
        self._wake.set()

    def finish(self) -> None:
        """No more pieces: the exec call returned (its offers ran before this, in order)."""
        self._done = True
        self._wake.set()

    async def pump(self, send: Send) -> None:
        """Sends pieces until ``finish`` and the queue is empty."""
        while True:
            while self._pieces:
                message, size = self._pieces.popleft()
                self._size -= size
                await send(message)
            if self._done:
                return
            self._wake.clear()
            await self._wake.wait()


def error_message(exc: RlmboxError) -> dict[str, Any]:
    status, kind = status_for(exc)
    return {"type": "error", "status": status, **error_body(kind, str(exc))}


async def read_request(ws: web.WebSocketResponse) -> m.StreamExecRequest | None:
    """The client's one request message, or None after answering a bad one and closing."""
    try:
        msg = await ws.receive(timeout=FIRST_MESSAGE_TIMEOUT_S)
    except TimeoutError:
        error = DaemonError(f"no request message within {FIRST_MESSAGE_TIMEOUT_S:g} s",
                            status=400, type=INVALID_REQUEST)
    else:
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED,
                        WSMsgType.ERROR):
            return None   # the client left, or sent too much: aiohttp has closed (1009)
        if msg.type is not WSMsgType.TEXT:
            error = DaemonError("the request must be one JSON text message", status=400,
                                type=INVALID_REQUEST)
        else:
            try:
                return parse_body(m.StreamExecRequest,
                                  msg.data.encode("utf-8", "surrogatepass"))
            except DaemonError as exc:
                error = exc
    await send_json(ws, error_message(error))
    await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"invalid request")
    return None


def _is_interrupt(text: str) -> bool:
    try:
        message = json.loads(text)
    except ValueError:
        return False
    return isinstance(message, dict) and message.get("type") == "interrupt"


async def watch_interrupts(ws: web.WebSocketResponse,
                           interrupt: Callable[[], Awaitable[object]]) -> None:
    """Reads the client's messages while its cell runs; each ``{"type": "interrupt"}``
    interrupts the cell. Ends when the client closes (or is cancelled when the cell ends)."""
    async for msg in ws:
        if msg.type is WSMsgType.TEXT and _is_interrupt(msg.data):
            with contextlib.suppress(RlmboxError):   # the session ended meanwhile
                await interrupt()


async def send_json(ws: web.WebSocketResponse, body: dict[str, Any]) -> None:
    """Sends unless the client has gone: a vanished client does not stop the cell."""
    if ws.closed:
        return
    try:
        await ws.send_str(json.dumps(body))
    except (ConnectionError, RuntimeError):   # closing transport
        return


def result_message(result: ExecResult, dropped: int) -> dict[str, Any]:
    return {"type": "result", **result_json(result), "stream_dropped": dropped}
