"""The OpenAPI 3.1 document of the daemon, built from the pydantic models it validates
and answers with (so the schemas are the code's), and the route table it describes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from rlmbox.daemon import models as m

_REF = "#/components/schemas/{model}"
_SESSION_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}


def _ref(model: type[BaseModel]) -> dict[str, Any]:
    return {"$ref": _REF.format(model=model.__name__)}


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": _ref(model)}}}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {400: "invalid request", 401: "missing, unknown or revoked token",
            403: "denied by the policy (or a backend it does not allow)",
            404: "no such session (or not yours)",
            409: "the session is closed, lost or dead", 413: "body over the size cap",
            429: "a budget is spent, or the tenant holds its most open sessions",
            502: "the sandbox or LM provider failed",
            503: "a backend or the audit log is unavailable"}
    return {str(s): _json(m.ErrorBody, text[s]) for s in statuses}


def _op(summary: str, responses: dict[str, Any], *, body: type[BaseModel] | None = None,
        params: list[dict[str, Any]] | None = None, public: bool = False) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if body is not None:
        op["requestBody"] = {"required": True,
                             "content": {"application/json": {"schema": _ref(body)}}}
    if params:
        op["parameters"] = params
    if public:
        op["security"] = []
    return op


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}


_STREAM_PROTOCOL = """A WebSocket (RFC 6455) upgrade; the bearer token goes on the upgrade
request. Errors found before the upgrade (token, session, not a WebSocket request) are the
JSON error answers below. After the upgrade the client sends ONE text message, an
StreamExecRequest (`{"code", "timeout_s"?, "root_text"?}`, at most 64 MiB, else close
1009); the server sends `{"type": "output", "stream": "stdout"|"stderr", "data": str}` text
messages while the cell runs (the cell's output as the policy caps it) and, with
`"root_text": true`, `{"type": "root_text", "session": str, "depth": int, "data": str}`
messages as the root model of an rlm_query child the cell starts streams its reply (metered
and audited as without streaming); a slow reader may miss a tail of these messages,
counted in `stream_dropped`; then ONE `{"type": "result", ...ExecResultBody,
"stream_dropped": int}` and closes (1000). While the cell runs the client may send
`{"type": "interrupt"}` to interrupt it (as POST .../interrupt); other messages are
ignored. A bad request message gets `{"type": "error",
"error": ErrorDetail}` and close 1008; an error running the cell (session closed, audit
failure) gets the same error message and close 1008 (4xx class) or 1011 (5xx class).
The cell runs under the same per-session lock as POST .../exec."""


def _stream_op(authed: dict[str, Any]) -> dict[str, Any]:
    op = _op("run one cell over a WebSocket, its output streamed as it happens",
             {"101": {"description": "switching to the WebSocket protocol"}, **authed,
              **_errors(400, 404, 409)}, params=[_SESSION_ID])
    op["description"] = _STREAM_PROTOCOL
    return op


def _files_ops(authed: dict[str, Any]) -> dict[str, Any]:
    """Files in and out of the sandbox's writable area (docs/daemon.md "Files")."""
    path = {"name": "path", "in": "query", "required": False, "schema": {"type": "string"},
            "description": "an absolute path in the sandbox's writable area (e.g. /tmp/x)"}
    refused = _errors(400, 403, 404, 409, 413, 502, 503)
    put = _op("write the body's bytes to ?path= (decided as files.write, audited)",
              {"200": _json(m.FileWritten, "written"), **authed, **refused},
              params=[_SESSION_ID, {**path, "required": True}])
    put["requestBody"] = {"required": True, "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
    get = _op("?path=: the file's bytes (files.read); ?dir=: the directory's entries "
              "(files.list); exactly one of them",
              {"200": {"description": "the bytes, or the listing", "content": {
                  "application/octet-stream": {"schema": {"type": "string",
                                                          "format": "binary"}},
                  "application/json": {"schema": _ref(m.FileListing)}}},
               **authed, **refused},
              params=[_SESSION_ID, path,
                      _query("dir", "a directory in the writable area", {"type": "string"})])
    return {"put": put, "get": get}


def build_spec(version: str) -> dict[str, Any]:
    """The whole document; ``paths`` keys are the routes the app serves (tested)."""
    models: list[type[BaseModel]] = [
        m.CreateSessionRequest, m.ExecRequest, m.StreamExecRequest, m.Health, m.SessionInfo,
        m.SessionList, m.ExecResultBody, m.InterruptResult, m.AuditPage, m.ErrorBody, m.ErrorDetail,
        m.FileListing, m.FileEntryBody, m.FileWritten]
    _, top = models_json_schema(
        [(model, "validation") for model in models], ref_template=_REF)
    authed = _errors(401)
    paths: dict[str, Any] = {
        "/v1/health": {"get": _op("liveness and version", {"200": _json(m.Health, "up")},
                                  public=True)},
        "/openapi.json": {"get": _op("this document", {"200": {
            "description": "OpenAPI 3.1", "content": {"application/json": {
                "schema": {"type": "object"}}}}}, public=True)},
        "/v1/sessions": {
            "post": _op("start a session under an operator-loaded policy",
                        {"201": _json(m.SessionInfo, "started"), **authed,
                         **_errors(400, 403, 413, 429, 502, 503)},
                        body=m.CreateSessionRequest),
            "get": _op("the caller's sessions, newest first, a page at a time",
                       {"200": _json(m.SessionList, "a page of sessions"), **authed,
                        **_errors(400)},
                       params=[_query("before", "the next_before of the previous page",
                                      {"type": "string"}),
                               _query("limit", "page size",
                                      {"type": "integer", "minimum": 1, "maximum": 1000})]),
        },
        "/v1/sessions/{id}": {
            "get": _op("one of the caller's sessions",
                       {"200": _json(m.SessionInfo, "the session"), **authed,
                        **_errors(404)}, params=[_SESSION_ID]),
            "delete": _op("close the session and kill its sandbox",
                          {"204": {"description": "closed"}, **authed, **_errors(404)},
                          params=[_SESSION_ID]),
        },
        "/v1/sessions/{id}/exec": {
            "post": _op("run one cell in the session's REPL",
                        {"200": _json(m.ExecResultBody, "the cell's result"), **authed,
                         **_errors(400, 404, 409, 413, 502, 503)},
                        body=m.ExecRequest, params=[_SESSION_ID]),
        },
        "/v1/sessions/{id}/exec/stream": {"get": _stream_op(authed)},
        "/v1/sessions/{id}/interrupt": {
            "post": _op("interrupt the running cell (KeyboardInterrupt inside, state kept)",
                        {"200": _json(m.InterruptResult, "whether a cell was running"),
                         **authed, **_errors(404, 409)}, params=[_SESSION_ID]),
        },
        "/v1/audit": {
            "get": _op("the caller's own audit events, by sequence number",
                       {"200": _json(m.AuditPage, "a page of events"), **authed,
                        **_errors(400, 404)},
                       params=[_query("session", "only this session", {"type": "string"}),
                               _query("after_seq", "events after this seq",
                                      {"type": "integer", "minimum": 0}),
                               _query("limit", "page size",
                                      {"type": "integer", "minimum": 1, "maximum": 1000})]),
        },
    }
    paths["/v1/sessions/{id}/files"] = _files_ops(authed)
    paths["/v1/sessions/{id}/view"] = {"get": _op(
        "the trajectory viewer's report of one of the caller's sessions and its rlm_query "
        "children (docs/viewer.md)",
        {"200": {"description": "a self-contained HTML page (no script)",
                 "content": {"text/html": {"schema": {"type": "string"}}}},
         **authed, **_errors(404)}, params=[_SESSION_ID])}
    paths["/metrics"] = {"get": _op(
        "Prometheus metrics (docs/observability.md): on the Unix socket, and on TCP only "
        "when the daemon runs with --metrics-tcp; no bearer token (the socket's mode, or "
        "the operator's network, guards it); 404 elsewhere",
        {"200": {"description": "the Prometheus text exposition format",
                 "content": {"text/plain": {"schema": {"type": "string"}}}},
         **_errors(404)}, public=True)}
    return {
        "openapi": "3.1.0",
        "info": {"title": "rlmbox daemon", "version": version,
                 "description": "Secure execution of RLM REPL cells; see docs/daemon.md."},
        "paths": paths,
        "components": {"schemas": top["$defs"],
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
    }
