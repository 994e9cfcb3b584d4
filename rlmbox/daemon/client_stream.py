"""The client side of ``GET /v1/sessions/{id}/exec/stream`` (protocol: daemon/stream.py).

httpx speaks no WebSocket, so this uses aiohttp's client, which does WebSockets over a
Unix socket or TCP and is already the ``daemon`` extra (the ``websockets`` package would
be a new dependency). aiohttp is imported only when a stream is opened, so the client
module still loads with httpx alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlmbox.daemon.wire import ERROR_TYPE_HEADER, exception_for, result_from_json
from rlmbox.errors import DaemonError
from rlmbox.runtime.results import ExecResult

OutputCallback = Callable[[str, str], None]
# (child session id, depth, a piece of its root model's reply)
RootTextCallback = Callable[[str, int, str], None]
_MAX_MESSAGE_BYTES = 256 * 1024 * 1024   # the daemon is trusted; results can be large
_CLOSE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class StreamTarget:
    """Where and as whom to open streams (what the Client was built with)."""

    token: str
    socket: str | Path | None
    url: str | None
    timeout: float


def _refused(exc: Any) -> DaemonError | Exception:
    """The exception for an upgrade the daemon answered with an error status: aiohttp
    drops the JSON body, so the error type travels in a header."""
    kind = exc.headers.get(ERROR_TYPE_HEADER, "") if exc.headers else ""
    return exception_for(exc.status, kind or "BadResponse",
                         f"the daemon refused the stream ({exc.status} {kind})".strip())


async def _interrupt_when(event: asyncio.Event, ws: Any) -> None:
    await event.wait()
    await ws.send_str(json.dumps({"type": "interrupt"}))


async def exec_stream(target: StreamTarget, session_id: str, code: str,
                      timeout: float | None, on_output: OutputCallback,
                      interrupt: asyncio.Event | None = None,
                      on_root_text: RootTextCallback | None = None) -> ExecResult:
    """Runs one cell; ``on_output(stream, text)`` per output message and
    ``on_root_text(child_id, depth, text)`` per root-text message; the result. When
    ``interrupt`` is set while the cell runs, the daemon is asked to interrupt it."""
    try:
        import aiohttp  # noqa: PLC0415 - an extra: the client loads without it
    except ImportError as exc:
        raise DaemonError("exec_stream needs aiohttp: pip install 'rlmbox[daemon]'",
                          type="MissingDependency") from exc
    body: dict[str, Any] = {"code": code}
    if on_root_text is not None:
        body["root_text"] = True
    if timeout is not None:
        body["timeout_s"] = timeout
    connector = aiohttp.UnixConnector(path=str(target.socket)) if target.socket else None
    base = (target.url or "http://rlmbox").rstrip("/")
    ws_timeout = aiohttp.ClientWSTimeout(ws_receive=target.timeout, ws_close=_CLOSE_TIMEOUT_S)
    try:
        async with aiohttp.ClientSession(
                connector=connector, headers={"Authorization": f"Bearer {target.token}"},
        ) as http, http.ws_connect(f"{base}/v1/sessions/{session_id}/exec/stream",
                                   timeout=ws_timeout, max_msg_size=_MAX_MESSAGE_BYTES,
                                   autoclose=True) as ws:
            await ws.send_str(json.dumps(body))
            sender = asyncio.create_task(_interrupt_when(interrupt, ws)) if interrupt else None
            try:
                return await _receive(ws, on_output, on_root_text)
            finally:
                if sender is not None:
                    sender.cancel()
                    with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                        await sender
    except aiohttp.WSServerHandshakeError as exc:
        raise _refused(exc) from exc
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise DaemonError(f"cannot reach the rlmbox daemon: {exc}",
                          type="Unreachable") from exc


async def _receive(ws: Any, on_output: OutputCallback,
                   on_root_text: RootTextCallback | None) -> ExecResult:
    """Output messages to ``on_output`` (root text to ``on_root_text``, or nowhere) until
    the result (or an error message)."""
    import aiohttp  # noqa: PLC0415 - an extra: the client loads without it

    async for msg in ws:
        if msg.type is not aiohttp.WSMsgType.TEXT:
            break
        message = json.loads(msg.data)
        kind = message.get("type")
        if kind == "output":
            on_output(message["stream"], message["data"])
        elif kind == "root_text" and on_root_text is not None:
            on_root_text(message["session"], message["depth"], message["data"])
        elif kind == "result":
            return result_from_json(message)
        elif kind == "error":
            error = message.get("error") or {}
            status = message.get("status")
            raise exception_for(status if isinstance(status, int) else 400,
                                str(error.get("type", "")), str(error.get("message", "")))
    raise DaemonError(f"the stream closed before the result (close code {ws.close_code})",
                      type="BadResponse")
