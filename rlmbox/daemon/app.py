"""The HTTP API (aiohttp): routes, bearer-token auth, JSON errors, the body cap.

Handlers never block the event loop: starting sessions and running cells go to a thread
pool, each in a cell slot of the tenant's (``admission.py``), bodies over
``OFFLOAD_BYTES`` are parsed on a thread of their own, and a per-session asyncio lock
queues a second exec on the same session without holding a thread. Each tenant's
requests pass a token bucket (``rate_limit.py``). Every failure is a JSON ``{"error":
{"type", "message"}}`` with a fitting status; bad input is a 4xx, never a 5xx. Refusals
are audited at a bounded rate (``refusals.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import weakref
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import WSCloseCode, web
from pydantic import BaseModel

from rlmbox.daemon import models as m
from rlmbox.daemon.admission import Slot
from rlmbox.daemon.audit_index import AuditIndex
from rlmbox.daemon.audit_view import MAX_PAGE, audit_page
from rlmbox.daemon.engine import Engine
from rlmbox.daemon.openapi import build_spec
from rlmbox.daemon.rate_limit import RateLimiter, retry_after_header
from rlmbox.daemon.refusals import RefusalRecorder
from rlmbox.daemon.scrape import METRICS_PATH, Scrape, metrics_response, scrape_allowed
from rlmbox.daemon.session_view import CLUSTER_VIEW, VIEW_HEADERS, session_report
from rlmbox.daemon.store import SessionRow, Store
from rlmbox.daemon.stream import (
    OutputRelay,
    error_message,
    read_request,
    result_message,
    send_json,
    watch_interrupts,
)
from rlmbox.daemon.validation import parse_body, query_int, refuse_unknown_query
from rlmbox.daemon.wire import (
    BACKEND_NOT_ALLOWED,
    ERROR_TYPE_HEADER,
    INTERNAL,
    INVALID_REQUEST,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    RATE_LIMITED,
    TOO_LARGE,
    UNAUTHORIZED,
    error_body,
    result_json,
    status_for,
)
from rlmbox.errors import DaemonError, NotOnCluster, RlmboxError
from rlmbox.runtime.contract import SessionLike

log = logging.getLogger("rlmbox.daemon")
MAX_BODY_BYTES = 64 * 1024 * 1024
# The HTTP parser refuses a longer request line itself, in plain text, before rlmbox sees
# it. aiohttp's default (8,190 bytes) is shorter than a legal file path (4,096 characters
# of up to 12 bytes each once percent-encoded), so the cap is raised past any legal request.
MAX_REQUEST_LINE_BYTES = 64 * 1024
OFFLOAD_BYTES = 256 * 1024   # bodies above this are parsed off the event loop
# A refusal for load (or a bad token) is answered after a pause: a client that retries at
# once gets one refusal per connection per TARPIT_S, so a flood of them cannot take the
# event loop from other tenants. The pause holds a coroutine, never a thread.
TARPIT_S = 1.0
TARPIT_STATUSES = frozenset({401, 429, 503})
PUBLIC_PATHS = frozenset({"/v1/health", "/openapi.json"})
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ENGINE: web.AppKey[Engine] = web.AppKey("engine", Engine)
STORE: web.AppKey[Store] = web.AppKey("store", Store)
AUDIT_INDEX: web.AppKey[AuditIndex] = web.AppKey("audit_index", AuditIndex)
POOL: web.AppKey[ThreadPoolExecutor] = web.AppKey("pool", ThreadPoolExecutor)
PARSE_POOL: web.AppKey[ThreadPoolExecutor] = web.AppKey("parse_pool", ThreadPoolExecutor)
RATE: web.AppKey[RateLimiter] = web.AppKey("rate", RateLimiter)
REFUSALS: web.AppKey[RefusalRecorder] = web.AppKey("refusals", RefusalRecorder)
SPEC: web.AppKey[dict[str, Any]] = web.AppKey("spec", dict)
SCRAPE: web.AppKey[Scrape] = web.AppKey("scrape", Scrape)
LOCKS: web.AppKey[weakref.WeakValueDictionary[str, asyncio.Lock]] = web.AppKey(
    "locks", weakref.WeakValueDictionary)
TENANT: web.RequestKey[str] = web.RequestKey("tenant", str)


def _error(status: int, kind: str, message: str,
           retry_after_s: float | None = None) -> web.Response:
    response = web.json_response(error_body(kind, message), status=status,
                                 headers={ERROR_TYPE_HEADER: kind})
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="rlmbox"'
    if retry_after_s is not None:
        response.headers["Retry-After"] = retry_after_header(retry_after_s)
    return response


def _refused(request: web.Request, status: int, kind: str) -> None:
    """Audits a refusal of the daemon's own (the engine audits its refusals itself)."""
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else request.path[:200]
    request.app[REFUSALS].record(request.get(TENANT), request.method, route, status, kind)


async def _refusal_taken(request: web.Request, exc: DaemonError) -> None:
    """What every refusal of the daemon's own gets, as a response or on a stream:
    audited, and paused first when it is for load or a bad token."""
    status, kind = status_for(exc)
    if kind != BACKEND_NOT_ALLOWED:   # the engine audits that one itself
        _refused(request, status, kind)
    if status in TARPIT_STATUSES:
        await asyncio.sleep(TARPIT_S)


@dataclass(frozen=True)
class Pools:
    """The server's threads: ``work`` for sessions, cells, closes and audit pages (more
    threads than the cell limit), ``parse`` (one thread) for large request bodies."""

    work: ThreadPoolExecutor
    parse: ThreadPoolExecutor


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:   # aiohttp's own: no route, wrong method, body cap
        if exc.status < 400:
            raise
        kind = {404: NOT_FOUND, 405: METHOD_NOT_ALLOWED, 413: TOO_LARGE}.get(
            exc.status, INVALID_REQUEST)
        message = exc.text or exc.reason
        if exc.status == 413:
            message = f"the request body is over the cap of {MAX_BODY_BYTES} bytes"
        _refused(request, exc.status, kind)
        return _error(exc.status, kind, message)
    except RlmboxError as exc:
        status, kind = status_for(exc)
        if status >= 500:
            log.warning("%s %s: %s: %s", request.method, request.path, kind, exc)
        retry_after = None
        if isinstance(exc, DaemonError):
            retry_after = exc.retry_after_s
            await _refusal_taken(request, exc)
        elif 400 <= status < 500 or isinstance(exc, NotOnCluster):
            # the engine refused (a closed session, a bad file path, what a cluster
            # session cannot do: 501)
            _refused(request, status, kind)
        return _error(status, kind, str(exc), retry_after)
    except Exception:
        log.exception("unexpected error in %s %s", request.method, request.path)
        return _error(500, INTERNAL, "internal error; the daemon's log has the details")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in PUBLIC_PATHS and request.method == "GET":
        return await handler(request)
    if request.path == METRICS_PATH:   # the operator's, never a tenant's (scrape.py)
        if not scrape_allowed(request, request.app[SCRAPE]):
            raise web.HTTPNotFound()
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    tenant = None
    if scheme.lower() == "bearer" and token.strip():
        tenant = request.app[STORE].authenticate(token.strip())
    if tenant is None:
        raise DaemonError("a valid bearer token is required (Authorization: Bearer ...)",
                          status=401, type=UNAUTHORIZED)
    request[TENANT] = tenant
    wait = request.app[RATE].take(tenant)
    if wait > 0:
        raise DaemonError(f"tenant {tenant!r} is over its request rate "
                          f"({request.app[RATE].rate:g}/s)", status=429, type=RATE_LIMITED,
                          retry_after_s=wait)
    return await handler(request)


async def _blocking(request: web.Request, fn: Callable[..., T], *args: Any) -> T:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(request.app[POOL], functools.partial(fn, *args))


async def _in_slot(request: web.Request, slot: Slot, fn: Callable[..., T], *args: Any) -> T:
    """``fn`` on the pool, holding ``slot`` until the thread is done with it: a client
    that goes away does not free the slot while its cell still runs."""
    future = request.app[POOL].submit(fn, *args)
    future.add_done_callback(lambda _: slot.release())
    return await asyncio.wrap_future(future)


async def _body(request: web.Request, model: type[M]) -> M:
    """The validated body; a large one is parsed on the parse thread, not the loop."""
    raw = await request.read()
    if len(raw) <= OFFLOAD_BYTES:
        return parse_body(model, raw)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(request.app[PARSE_POOL], parse_body, model, raw)


def _session_json(row: SessionRow) -> dict[str, Any]:
    return {"id": row.id, "policy": row.policy, "policy_sha256": row.policy_sha256,
            "backend": row.backend, "state": row.state, "created": row.created,
            "closed": row.closed, "reason": row.reason}


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "version": request.app[SPEC]["info"]["version"]})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[SPEC])


async def create_session(request: web.Request) -> web.Response:
    body = await _body(request, m.CreateSessionRequest)
    engine = request.app[ENGINE]
    engine.policy(body.policy)   # an unknown name is refused before any thread is used
    slot = engine.admission.take_cell(request[TENANT])
    row = await _in_slot(request, slot, engine.create, request[TENANT], body.policy,
                         body.backend, body.context)
    return web.json_response(_session_json(row), status=201)


async def list_sessions(request: web.Request) -> web.Response:
    """One page of the caller's sessions, newest first, and the ``before`` of the next
    page (None on the last)."""
    tenant, store = request[TENANT], request.app[STORE]
    limit = query_int(request.query, "limit", 100, low=1, high=MAX_PAGE)
    before = request.query.get("before")
    refuse_unknown_query(request.query, {"limit", "before"})
    if before is not None and store.session(before, tenant) is None:
        # another tenant's session reads as unknown: the answer tells nothing about it
        raise DaemonError(f"query parameter before: no session {before!r}", status=400,
                          type=INVALID_REQUEST)
    rows = store.sessions(tenant, limit + 1, before)
    following = rows[limit - 1].id if len(rows) > limit else None
    return web.json_response({"sessions": [_session_json(r) for r in rows[:limit]],
                              "next_before": following})


async def get_session(request: web.Request) -> web.Response:
    session_id = request.match_info["id"]
    row = request.app[STORE].session(session_id, request[TENANT])
    if row is None:
        raise DaemonError(f"no session {session_id!r}", status=404, type=NOT_FOUND)
    return web.json_response(_session_json(row))


async def delete_session(request: web.Request) -> web.Response:
    await _blocking(request, request.app[ENGINE].close, request[TENANT],
                    request.match_info["id"])
    return web.Response(status=204)


def _session_lock(request: web.Request, session_id: str) -> asyncio.Lock:
    locks = request.app[LOCKS]
    lock = locks.get(session_id)
    if lock is None:
        lock = asyncio.Lock()
        locks[session_id] = lock
    return lock


async def exec_cell(request: web.Request) -> web.Response:
    session_id = request.match_info["id"]
    body = await _body(request, m.ExecRequest)
    engine = request.app[ENGINE]
    engine.live(request[TENANT], session_id)   # 404/409 before queueing
    async with _session_lock(request, session_id):
        slot = engine.admission.take_cell(request[TENANT])
        result = await _in_slot(request, slot, engine.exec, request[TENANT], session_id,
                                body.code, body.timeout_s)
    return web.json_response(result_json(result))


async def exec_stream(request: web.Request) -> web.StreamResponse:
    """``exec`` over a WebSocket with output messages as the cell runs (stream.py)."""
    session_id = request.match_info["id"]
    engine = request.app[ENGINE]
    engine.live(request[TENANT], session_id)   # 401/404/409 as JSON, before upgrading
    ws = web.WebSocketResponse(max_msg_size=MAX_BODY_BYTES, compress=False)
    if not ws.can_prepare(request).ok:
        raise DaemonError("this route needs a WebSocket upgrade", status=400,
                          type=INVALID_REQUEST)
    await ws.prepare(request)
    body = await read_request(ws)
    if body is None:
        return ws
    relay = OutputRelay(asyncio.get_running_loop())

    pump = asyncio.create_task(relay.pump(functools.partial(send_json, ws)))
    watcher = asyncio.create_task(watch_interrupts(ws, functools.partial(
        _blocking, request, engine.interrupt, request[TENANT], session_id)))
    try:
        async with _session_lock(request, session_id):
            slot = engine.admission.take_cell(request[TENANT])
            result = await _in_slot(request, slot, engine.exec, request[TENANT], session_id,
                                    body.code, body.timeout_s, relay.offer,
                                    relay.offer_root_text if body.root_text else None)
    except Exception as exc:   # after the upgrade, errors are messages, not responses
        await _stop(watcher)
        relay.finish()
        await pump
        error = exc if isinstance(exc, RlmboxError) else DaemonError(
            "internal error; the daemon's log has the details", status=500, type=INTERNAL)
        if not isinstance(exc, RlmboxError) or status_for(exc)[0] >= 500:
            log.warning("exec stream on %s: %s: %s", session_id, type(exc).__name__, exc)
        if isinstance(exc, DaemonError):   # refused for load after the upgrade
            await _refusal_taken(request, exc)
        elif isinstance(exc, NotOnCluster):   # refused by what the session's host can do
            _refused(request, *status_for(exc))
        await send_json(ws, error_message(error))
        await ws.close(code=WSCloseCode.INTERNAL_ERROR if status_for(error)[0] >= 500
                       else WSCloseCode.POLICY_VIOLATION)
        return ws
    await _stop(watcher)
    relay.finish()
    await pump
    await send_json(ws, result_message(result, relay.dropped))
    await ws.close()
    return ws


async def interrupt_cell(request: web.Request) -> web.Response:
    """Interrupts the running cell (not queued behind it: no session lock, no slot)."""
    interrupted = await _blocking(request, request.app[ENGINE].interrupt, request[TENANT],
                                  request.match_info["id"])
    return web.json_response({"interrupted": interrupted})


def _file_query(request: web.Request, *allowed: str) -> tuple[str, str]:
    """Exactly one of ``allowed`` in the query: ``(name, value)``; else 400."""
    given = [name for name in allowed if name in request.query]
    unknown = set(request.query) - set(allowed)
    if unknown or len(given) != 1:
        raise DaemonError(f"give exactly one query parameter of: {', '.join(allowed)}",
                          status=400, type=INVALID_REQUEST)
    return given[0], request.query[given[0]]


async def _transfer(request: web.Request, transfer: Callable[[SessionLike], T]) -> T:
    """A file transfer on the caller's session: after its running cell, in a cell slot."""
    session_id = request.match_info["id"]
    engine = request.app[ENGINE]
    engine.live(request[TENANT], session_id)   # 404/409 before queueing
    async with _session_lock(request, session_id):
        slot = engine.admission.take_cell(request[TENANT])
        return await _in_slot(request, slot, engine.files, request[TENANT], session_id,
                              transfer)


async def put_file(request: web.Request) -> web.Response:
    """Writes the body's bytes to ``?path=`` in the sandbox's writable area."""
    _, path = _file_query(request, "path")
    data = await request.read()   # capped at MAX_BODY_BYTES by the app
    await _transfer(request, lambda session: session.write_file(path, data))
    return web.json_response({"path": path, "size": len(data)})


async def get_files(request: web.Request) -> web.Response:
    """``?path=``: the file's bytes; ``?dir=``: the directory's entries as JSON."""
    name, path = _file_query(request, "path", "dir")
    if name == "dir":
        entries = await _transfer(request, lambda session: session.list_files(path))
        return web.json_response({"entries": entries})
    data = await _transfer(request, lambda session: session.read_file(path))
    return web.Response(body=data, content_type="application/octet-stream")


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def audit_events(request: web.Request) -> web.Response:
    tenant = request[TENANT]
    session = request.query.get("session")
    if session is not None and request.app[STORE].session(session, tenant) is None:
        raise DaemonError(f"no session {session!r}", status=404, type=NOT_FOUND)
    after = query_int(request.query, "after_seq", 0, low=0, high=2**62)
    limit = query_int(request.query, "limit", 100, low=1, high=MAX_PAGE)
    refuse_unknown_query(request.query, {"session", "after_seq", "limit"})
    events, next_after = await _blocking(
        request, functools.partial(audit_page, request.app[AUDIT_INDEX], tenant,
                                   session=session, after_seq=after, limit=limit))
    return web.json_response({"events": events, "next_after_seq": next_after})


async def session_view(request: web.Request) -> web.Response:
    """The trajectory viewer's HTML report of one of the caller's sessions."""
    session_id = request.match_info["id"]
    row = request.app[STORE].session(session_id, request[TENANT])
    if row is None:
        raise DaemonError(f"no session {session_id!r}", status=404, type=NOT_FOUND)
    if row.node is not None:
        raise NotOnCluster(CLUSTER_VIEW)
    html = await _blocking(request, session_report, request.app[AUDIT_INDEX].directory,
                           request[TENANT], session_id)
    return web.Response(text=html, content_type="text/html", headers=VIEW_HEADERS)


async def metrics(request: web.Request) -> web.Response:
    return metrics_response(request.app[SCRAPE])


ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "/v1/health", health),
    ("GET", "/openapi.json", openapi),
    ("POST", "/v1/sessions", create_session),
    ("GET", "/v1/sessions", list_sessions),
    ("GET", "/v1/sessions/{id}", get_session),
    ("DELETE", "/v1/sessions/{id}", delete_session),
    ("POST", "/v1/sessions/{id}/exec", exec_cell),
    ("GET", "/v1/sessions/{id}/exec/stream", exec_stream),
    ("POST", "/v1/sessions/{id}/interrupt", interrupt_cell),
    ("PUT", "/v1/sessions/{id}/files", put_file),
    ("GET", "/v1/sessions/{id}/files", get_files),
    ("GET", "/v1/audit", audit_events),
    ("GET", "/v1/sessions/{id}/view", session_view),
    ("GET", METRICS_PATH, metrics),
)


def build_app(engine: Engine, store: Store, index: AuditIndex, pools: Pools,
              refusals: RefusalRecorder, version: str, scrape: Scrape) -> web.Application:
    app = web.Application(middlewares=[errors_middleware, auth_middleware],
                          client_max_size=MAX_BODY_BYTES)
    limits = engine.admission.limits
    app[ENGINE] = engine
    app[STORE] = store
    app[AUDIT_INDEX] = index
    app[POOL] = pools.work
    app[PARSE_POOL] = pools.parse
    app[RATE] = RateLimiter(limits.requests_per_s_per_tenant, limits.request_burst_per_tenant)
    app[REFUSALS] = refusals
    app[SPEC] = build_spec(version)
    app[SCRAPE] = scrape
    app[LOCKS] = weakref.WeakValueDictionary()
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
    return app
