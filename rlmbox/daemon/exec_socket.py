"""``GET /v1/exec/socket``: the exec fast path, one kept WebSocket for many cells.

A ``POST .../exec`` pays for HTTP on every cell: a request to parse, the bearer token's
digest and lookup, a response to build (about half a millisecond on the machine
``benchmarks/bench_daemon.py`` ran on). Over this socket a client opens once and then
sends one text message per cell:

    {"session": str, "code": str, "timeout_s"?: float}      (a SocketExecRequest)

and gets one message back per message, in order: ``{"type": "result", ...}`` (the JSON of
``POST .../exec``), or ``{"type": "error", "status": int, "error": {"type", "message"},
"retry_after_s"?: float}`` with the status and type ``POST .../exec`` would have answered.
Every message is held to what a request is: the token is checked again (a token revoked
after the open is refused on the next message, 401, and the socket closed 1008), it takes
one of the tenant's request tokens, the body is validated (bad input is a 400 error
message and the socket stays open), the session is looked up through the tenant (another
tenant's reads as unknown), and the cell runs under the session lock in a cell slot of
the tenant's, audited by the engine; refusals are audited and paused as over HTTP.
"""

from __future__ import annotations

from typing import Any

from aiohttp import WSMessage, WSMsgType

from rlmbox.daemon.stream import error_message
from rlmbox.daemon.wire import INVALID_REQUEST
from rlmbox.errors import DaemonError, RlmboxError


def message_bytes(msg: WSMessage) -> bytes:
    """A text message's bytes for ``parse_body``; any other kind is a 400."""
    if msg.type is not WSMsgType.TEXT:
        raise DaemonError("each message must be one JSON text message", status=400,
                          type=INVALID_REQUEST)
    text: str = msg.data
    return text.encode("utf-8", "surrogatepass")   # parse_body refuses bad UTF-8 as 400


def socket_error(exc: RlmboxError) -> dict[str, Any]:
    """The error message for ``exc``, with ``retry_after_s`` where waiting helps."""
    message = error_message(exc)
    if isinstance(exc, DaemonError) and exc.retry_after_s is not None:
        message["retry_after_s"] = exc.retry_after_s
    return message
