"""``GET /v1/exec/socket``: the exec fast path, one kept WebSocket for many cells.

A ``POST .../exec`` pays for HTTP on every cell: a request to parse, the bearer token's
digest and lookup, a response to build, and two thread hops. Over this socket a client
opens once and then sends one text message per cell:

    {"session": str, "code": str, "timeout_s"?: float}      (a SocketExecRequest)

and gets one message back per message, in order: ``{"type": "result", ...}`` (the JSON of
``POST .../exec``), or ``{"type": "error", "status": int, "error": {"type", "message"},
"retry_after_s"?: float}`` with the status and type ``POST .../exec`` would have answered.
Every message is held to what a request is: the token is checked again (a token revoked
after the open is refused on the next message, 401, and the socket closed 1008), it takes
one of the tenant's request tokens, the body is validated (bad input is a 400 error
message and the socket stays open), the session is looked up through the tenant (another
tenant's reads as unknown), and the cell runs in a cell slot of the tenant's, audited by
the engine; refusals are audited and paused as over HTTP.

Served on the event loop, each cell on the socket crossed threads twice (loop to a pool
thread for the blocking exec, and back for the answer), each crossing a wake of an idle
thread: on the 2-vCPU machine of ``benchmarks/bench_daemon.py`` those two hops were most
of what the daemon added to a cell. So once aiohttp has answered the upgrade, the
connection is handed to one thread that reads each message, runs its cell and writes the
answer itself; the event loop does not see it again until it closes.

Threads are bounded: ``DaemonLimits.exec_sockets`` in all and ``exec_sockets_per_tenant``
each (more is refused at the upgrade), and a socket idle for ``IDLE_S`` is closed (the
client opens another).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rlmbox.daemon import models as m
from rlmbox.daemon.admission import DAEMON_BUSY
from rlmbox.daemon.engine import Engine
from rlmbox.daemon.limits import DaemonLimits
from rlmbox.daemon.rate_limit import RateLimiter
from rlmbox.daemon.refusals import TARPIT_STATUSES, RefusalRecorder
from rlmbox.daemon.store import Store
from rlmbox.daemon.stream import error_message
from rlmbox.daemon.validation import parse_body
from rlmbox.daemon.wire import (
    EXEC_SOCKET_PATH,
    INTERNAL,
    INVALID_REQUEST,
    RATE_LIMITED,
    UNAUTHORIZED,
    result_json,
    status_for,
)
from rlmbox.daemon.ws_frames import CLOSE_POLICY, TEXT, FrameSocket, SocketClosed
from rlmbox.errors import DaemonError, NotOnCluster, RlmboxError

log = logging.getLogger("rlmbox.daemon")
IDLE_S = 300.0
TOO_MANY_SOCKETS = "TooManySockets"


def socket_error(exc: RlmboxError) -> dict[str, Any]:
    """The error message for ``exc``, with ``retry_after_s`` where waiting helps."""
    message = error_message(exc)
    if isinstance(exc, DaemonError) and exc.retry_after_s is not None:
        message["retry_after_s"] = exc.retry_after_s
    return message


def _encoded(answer: dict[str, Any]) -> bytes:
    """The answer as JSON, or the internal error's (as the app answers a failure)."""
    try:
        return json.dumps(answer).encode("utf-8", "surrogatepass")
    except (TypeError, ValueError):
        log.exception("an exec socket's answer could not be encoded")
        return json.dumps(socket_error(DaemonError(
            "internal error; the daemon's log has the details", status=500,
            type=INTERNAL))).encode("utf-8")


class SocketCount:
    """Open exec sockets, in all and per tenant; thread-safe."""

    def __init__(self, limits: DaemonLimits) -> None:
        self._limits = limits
        self._lock = threading.Lock()
        self._mine: dict[str, int] = {}
        self._all = 0

    def enter(self, tenant: str) -> Callable[[], None]:
        """Counts one more socket of ``tenant``, or refuses it; returns its release."""
        with self._lock:
            mine = self._mine.get(tenant, 0)
            if mine >= self._limits.exec_sockets_per_tenant:
                raise DaemonError(f"tenant {tenant!r} has {mine} exec sockets open, the most "
                                  "this daemon allows", status=429, type=TOO_MANY_SOCKETS,
                                  retry_after_s=1.0)
            if self._all >= self._limits.exec_sockets:
                raise DaemonError("the daemon has its most exec sockets open", status=503,
                                  type=DAEMON_BUSY, retry_after_s=1.0)
            self._mine[tenant] = mine + 1
            self._all += 1
        released = threading.Event()

        def release() -> None:
            if released.is_set():
                return
            released.set()
            with self._lock:
                self._mine[tenant] -= 1
                self._all -= 1
        return release


@dataclass(frozen=True)
class SocketServer:
    """What a socket thread needs of the daemon, and whose socket it is."""

    engine: Engine
    store: Store
    rate: RateLimiter
    refusals: RefusalRecorder
    tarpit_s: float
    tenant: str
    token: str

    def serve(self, conn: FrameSocket) -> None:
        """Answers messages until the client closes, goes idle or its token is revoked."""
        try:
            while True:
                kind, raw = conn.receive()
                answer = self.answer(kind, raw)
                conn.send(TEXT, _encoded(answer))
                if answer.get("status") == 401:   # revoked: nothing more on this socket
                    conn.close(CLOSE_POLICY, b"unauthorized")
                    return
        except SocketClosed as exc:
            conn.close(exc.code)
        except OSError:   # the client went away, or stayed idle past IDLE_S
            pass
        finally:
            conn.sock.close()

    def answer(self, kind: int, raw: bytes) -> dict[str, Any]:
        """One message run as ``POST .../exec`` runs its body."""
        engine, tenant = self.engine, self.tenant
        try:
            self._check(kind)
            body = parse_body(m.SocketExecRequest, raw)
            # the slot is taken once the session's turn is held: a cell queued behind
            # the session's running one holds none while it waits (as a POST's does)
            result = engine.exec(tenant, body.session, body.code, body.timeout_s,
                                 admit=lambda: engine.admission.take_cell(tenant))
        except RlmboxError as exc:
            self._refused(exc)
            return socket_error(exc)
        except Exception:
            log.exception("unexpected error on an exec socket")
            return socket_error(DaemonError("internal error; the daemon's log has the "
                                            "details", status=500, type=INTERNAL))
        return {"type": "result", **result_json(result)}

    def _check(self, kind: int) -> None:
        """The token still valid, a request token of the tenant, a text message."""
        if self.store.authenticate(self.token) != self.tenant:
            raise DaemonError("the bearer token is no longer valid", status=401,
                              type=UNAUTHORIZED)
        wait = self.rate.take(self.tenant)
        if wait > 0:
            raise DaemonError(f"tenant {self.tenant!r} is over its request rate "
                              f"({self.rate.rate:g}/s)", status=429, type=RATE_LIMITED,
                              retry_after_s=wait)
        if kind != TEXT:
            raise DaemonError("each message must be one JSON text message", status=400,
                              type=INVALID_REQUEST)

    def _refused(self, exc: RlmboxError) -> None:
        """As the app's error middleware: a 5xx logged, a refusal audited, a refusal for
        load or a bad token answered after the pause."""
        status, kind = status_for(exc)
        if status >= 500:
            log.warning("exec socket: %s: %s", kind, exc)
        if isinstance(exc, DaemonError) or 400 <= status < 500 or isinstance(exc, NotOnCluster):
            self.refusals.record(self.tenant, "GET", EXEC_SOCKET_PATH, status, kind)
        if isinstance(exc, DaemonError) and status in TARPIT_STATUSES:
            time.sleep(self.tarpit_s)
