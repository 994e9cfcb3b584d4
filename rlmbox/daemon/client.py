"""Clients for the rlmbox daemon: ``Client`` (sync) and ``AsyncClient`` (asyncio).

    from rlmbox.daemon.client import Client
    with Client(socket="/run/rlmbox/rlmbox.sock", token=token) as c:
        s = c.create_session(policy="default", context="...")
        r = c.exec(s["id"], "print(len(context))")     # an ExecResult
        c.close_session(s["id"])

Errors come back as the exceptions an embedded caller would see: the daemon sends the
rlmbox error type's name, and the client raises that class (``SessionClosed``,
``PolicyDenied``, ...); errors of the daemon itself (bad token, not found, invalid
request) raise ``DaemonError`` with ``status`` and ``type``.

Each call is described once (a ``_Call``: method, path, body, how to read the answer);
the two clients differ only in how they send it, so they cannot drift apart: ``Client``
over its own kept-alive connections, one write per request (``client_connection.py``:
about 1 ms faster per request than httpx), ``AsyncClient`` over httpx.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, TypeVar

import httpx

from rlmbox.daemon.client_connection import (
    Answer,
    ConnectionPool,
    Endpoint,
    unreachable,
)
from rlmbox.daemon.client_stream import (
    OutputCallback,
    RootTextCallback,
    StreamTarget,
    exec_stream,
)
from rlmbox.daemon.wire import exception_for, result_from_json
from rlmbox.errors import DaemonError
from rlmbox.runtime.results import ExecResult

T = TypeVar("T")
_UNIX_BASE = "http://rlmbox"


@dataclass(frozen=True)
class _Call(Generic[T]):
    method: str
    path: str
    read: Callable[[Any], T]
    json: Any = None
    params: dict[str, Any] | None = None
    content: bytes | None = None   # a raw body (a file), instead of json
    raw: bool = False              # the answer is bytes (a file), not JSON


def _health() -> _Call[dict[str, Any]]:
    return _Call("GET", "/v1/health", dict)


def _create(policy: str | None, backend: str | None, context: Any) -> _Call[dict[str, Any]]:
    body = {k: v for k, v in (("policy", policy), ("backend", backend),
                              ("context", context)) if v is not None}
    return _Call("POST", "/v1/sessions", dict, json=body)


def _exec(session_id: str, code: str, timeout: float | None) -> _Call[ExecResult]:
    body: dict[str, Any] = {"code": code}
    if timeout is not None:
        body["timeout_s"] = timeout
    return _Call("POST", f"/v1/sessions/{session_id}/exec", result_from_json, json=body)


def _session(session_id: str) -> _Call[dict[str, Any]]:
    return _Call("GET", f"/v1/sessions/{session_id}", dict)


def _sessions(before: str | None,
              limit: int) -> _Call[tuple[list[dict[str, Any]], str | None]]:
    params: dict[str, Any] = {"limit": limit}
    if before is not None:
        params["before"] = before
    return _Call("GET", "/v1/sessions", lambda page: (page["sessions"], page["next_before"]),
                 params=params)


def _interrupt(session_id: str) -> _Call[bool]:
    return _Call("POST", f"/v1/sessions/{session_id}/interrupt",
                 lambda body: bool(body["interrupted"]))


def _close(session_id: str) -> _Call[None]:
    return _Call("DELETE", f"/v1/sessions/{session_id}", lambda _: None)


def _audit(session: str | None, after_seq: int,
           limit: int) -> _Call[tuple[list[dict[str, Any]], int | None]]:
    params: dict[str, Any] = {"after_seq": after_seq, "limit": limit}
    if session is not None:
        params["session"] = session
    return _Call("GET", "/v1/audit", lambda page: (page["events"], page["next_after_seq"]),
                 params=params)


def _write_file(session_id: str, path: str, data: bytes | str) -> _Call[None]:
    content = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    return _Call("PUT", f"/v1/sessions/{session_id}/files", lambda _: None,
                 params={"path": path}, content=content)


def _read_file(session_id: str, path: str) -> _Call[bytes]:
    return _Call("GET", f"/v1/sessions/{session_id}/files", bytes, params={"path": path},
                 raw=True)


def _list_files(session_id: str, path: str) -> _Call[list[dict[str, Any]]]:
    return _Call("GET", f"/v1/sessions/{session_id}/files",
                 lambda body: list(body["entries"]), params={"dir": path})


def _answer(call: _Call[T], answer: Answer) -> T:
    """The call's result, or the exception the error answer names."""
    if answer.status == 204:
        return call.read(None)
    ok = 200 <= answer.status < 300
    if call.raw and ok:
        return call.read(answer.content)
    try:
        body = json.loads(answer.content)
    except ValueError as exc:
        raise DaemonError(f"the daemon answered {answer.status} without JSON",
                          status=answer.status, type="BadResponse") from exc
    if not ok:
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            raise DaemonError(f"the daemon answered {answer.status}",
                              status=answer.status, type="BadResponse")
        refusal = exception_for(answer.status, str(error.get("type", "")),
                                str(error.get("message", "")))
        if isinstance(refusal, DaemonError):
            refusal.retry_after_s = _retry_after(answer.retry_after)
        raise refusal
    return call.read(body)


def _retry_after(text: str) -> float | None:
    """``Retry-After`` in seconds (the daemon sends whole seconds), else None."""
    return float(text) if text.isascii() and text.isdigit() else None


def _json_body(call: _Call[Any]) -> bytes | None:
    """The request body: the raw content, or the JSON as httpx would encode it."""
    if call.content is not None:
        return call.content
    if call.json is None:
        return None
    return json.dumps(call.json, ensure_ascii=False, separators=(",", ":"),
                      allow_nan=False).encode("utf-8")


def _exactly_one(socket: str | Path | None, url: str | None) -> None:
    if (socket is None) == (url is None):
        raise ValueError("give exactly one of socket= or url=")


def _options(token: str, socket: str | Path | None, url: str | None,
             timeout: float) -> dict[str, Any]:
    _exactly_one(socket, url)
    return {"base_url": url or _UNIX_BASE,
            "headers": {"Authorization": f"Bearer {token}"},
            "timeout": httpx.Timeout(timeout, connect=10.0)}


class Client:
    """Talks to one daemon over its Unix socket (``socket=``) or TCP (``url=``)."""

    def __init__(self, *, token: str, socket: str | Path | None = None,
                 url: str | None = None, timeout: float = 600.0) -> None:
        _exactly_one(socket, url)
        self._http = ConnectionPool(Endpoint.of(socket, url), token, timeout)
        self._stream = StreamTarget(token, socket, url, timeout)

    def _run(self, call: _Call[T]) -> T:
        content_type = ("application/octet-stream" if call.content is not None
                        else "application/json")
        return _answer(call, self._http.request(call.method, call.path, call.params,
                                                _json_body(call), content_type))

    def health(self) -> dict[str, Any]:
        return self._run(_health())

    def create_session(self, *, policy: str | None = None, backend: str | None = None,
                       context: Any = None) -> dict[str, Any]:
        """Starts a session; returns its record (``id``, ``policy``, ``state``, ...)."""
        return self._run(_create(policy, backend, context))

    def exec(self, session_id: str, code: str, *, timeout: float | None = None) -> ExecResult:
        return self._run(_exec(session_id, code, timeout))

    def exec_stream(self, session_id: str, code: str, *, on_output: OutputCallback,
                    timeout: float | None = None,
                    on_root_text: RootTextCallback | None = None) -> ExecResult:
        """``exec``, calling ``on_output(stream, text)`` on this thread as the cell's
        output arrives (a WebSocket; needs the ``daemon`` extra, aiohttp). The pieces are
        a prefix of each stream of the result: a reader too slow for the daemon's bounded
        relay misses the rest (``stream_dropped`` in the daemon's message), which the
        result still holds. If ``on_output`` raises, the exception propagates and the
        stream closes; the cell still runs to its end in the daemon (and is audited).
        ``on_root_text(child_id, depth, text)`` gets the replies of the root models of
        the ``rlm_query`` children the cell starts, as they stream (same relay, same cap).

        Raises:
            RuntimeError: called from a running event loop (use ``AsyncClient``).
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(exec_stream(self._stream, session_id, code, timeout,
                                           on_output, on_root_text=on_root_text))
        raise RuntimeError("Client.exec_stream cannot run inside an event loop; "
                           "use AsyncClient.exec_stream")

    def session(self, session_id: str) -> dict[str, Any]:
        return self._run(_session(session_id))

    def sessions(self) -> list[dict[str, Any]]:
        """Every one of the caller's sessions, newest first (page after page)."""
        listed, before = self.sessions_page()
        while before is not None:
            page, before = self.sessions_page(before=before)
            listed += page
        return listed

    def sessions_page(self, *, before: str | None = None,
                      limit: int = 100) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the caller's sessions, newest first, and the ``before`` of the
        next page (None on the last)."""
        return self._run(_sessions(before, limit))

    def close_session(self, session_id: str) -> None:
        self._run(_close(session_id))

    def interrupt(self, session_id: str) -> bool:
        """Interrupts the session's running cell (from another thread than the one
        running it); False when no cell was running."""
        return self._run(_interrupt(session_id))

    def write_file(self, session_id: str, path: str, data: bytes | str) -> None:
        """Writes ``data`` to ``path`` in the session's writable area (``files.write``)."""
        self._run(_write_file(session_id, path, data))

    def read_file(self, session_id: str, path: str) -> bytes:
        return self._run(_read_file(session_id, path))

    def list_files(self, session_id: str, path: str) -> list[dict[str, Any]]:
        """The entries (``name``, ``size``, ``kind``) of a directory in the writable area."""
        return self._run(_list_files(session_id, path))

    def audit(self, *, session: str | None = None, after_seq: int = 0,
              limit: int = 100) -> tuple[list[dict[str, Any]], int | None]:
        """One page of the caller's audit events and the ``after_seq`` of the next."""
        return self._run(_audit(session, after_seq, limit))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class AsyncClient:
    """``Client`` for asyncio: the same calls, awaited."""

    def __init__(self, *, token: str, socket: str | Path | None = None,
                 url: str | None = None, timeout: float = 600.0) -> None:
        options = _options(token, socket, url, timeout)
        transport = (httpx.AsyncHTTPTransport(uds=str(socket)) if socket is not None
                     else None)
        self._http = httpx.AsyncClient(transport=transport, **options)
        self._stream = StreamTarget(token, socket, url, timeout)

    async def _run(self, call: _Call[T]) -> T:
        try:
            response = await self._http.request(call.method, call.path, json=call.json,
                                                params=call.params, content=call.content)
        except httpx.HTTPError as exc:
            raise unreachable(exc) from exc
        return _answer(call, Answer(response.status_code, response.content,
                                    response.headers.get("Retry-After", "")))

    async def health(self) -> dict[str, Any]:
        return await self._run(_health())

    async def create_session(self, *, policy: str | None = None, backend: str | None = None,
                             context: Any = None) -> dict[str, Any]:
        return await self._run(_create(policy, backend, context))

    async def exec(self, session_id: str, code: str, *,
                   timeout: float | None = None) -> ExecResult:
        return await self._run(_exec(session_id, code, timeout))

    async def exec_stream(self, session_id: str, code: str, *, on_output: OutputCallback,
                          timeout: float | None = None,
                          interrupt: asyncio.Event | None = None,
                          on_root_text: RootTextCallback | None = None) -> ExecResult:
        """``Client.exec_stream``, awaited; ``on_output`` and ``on_root_text`` run on the
        event loop. Setting ``interrupt`` sends the stream's interrupt message: the cell
        ends ``interrupted``."""
        return await exec_stream(self._stream, session_id, code, timeout, on_output,
                                 interrupt, on_root_text)

    async def session(self, session_id: str) -> dict[str, Any]:
        return await self._run(_session(session_id))

    async def sessions(self) -> list[dict[str, Any]]:
        listed, before = await self.sessions_page()
        while before is not None:
            page, before = await self.sessions_page(before=before)
            listed += page
        return listed

    async def sessions_page(self, *, before: str | None = None,
                            limit: int = 100) -> tuple[list[dict[str, Any]], str | None]:
        return await self._run(_sessions(before, limit))

    async def close_session(self, session_id: str) -> None:
        await self._run(_close(session_id))

    async def interrupt(self, session_id: str) -> bool:
        return await self._run(_interrupt(session_id))

    async def write_file(self, session_id: str, path: str, data: bytes | str) -> None:
        await self._run(_write_file(session_id, path, data))

    async def read_file(self, session_id: str, path: str) -> bytes:
        return await self._run(_read_file(session_id, path))

    async def list_files(self, session_id: str, path: str) -> list[dict[str, Any]]:
        return await self._run(_list_files(session_id, path))

    async def audit(self, *, session: str | None = None, after_seq: int = 0,
                    limit: int = 100) -> tuple[list[dict[str, Any]], int | None]:
        return await self._run(_audit(session, after_seq, limit))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()
