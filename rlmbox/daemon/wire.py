"""What crosses the wire besides request bodies: error types with their HTTP statuses,
and results as JSON. Shared by the server and the client, so an exception raised in the
daemon comes back to a remote caller as the same class an embedded caller would catch.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from rlmbox import errors
from rlmbox.runtime.results import ExecResult

# rlmbox exceptions the engine raises, by class name: the status a request answers with
ENGINE_STATUS: dict[str, int] = {
    "PolicyError": 400,
    "CodeRejected": 400,
    "PolicyDenied": 403,
    "BudgetExceeded": 429,
    "FileTransferRefused": 400,
    "SessionClosed": 409,
    "SessionKilled": 409,
    "SessionError": 409,
    "SessionLost": 409,
    "NotOnCluster": 501,
    "IsolationUnavailable": 503,
    "SandboxUnavailable": 503,
    "SandboxCrashed": 502,
    "SandboxError": 502,
    "ProtocolError": 502,
    "AuditWriteError": 503,
    "AuditError": 503,
    "LMError": 502,
    "LMRequestFailed": 502,
}

# errors of the daemon itself (DaemonError.type)
INVALID_REQUEST = "InvalidRequest"
UNAUTHORIZED = "Unauthorized"
NOT_FOUND = "NotFound"
UNKNOWN_POLICY = "UnknownPolicy"
BACKEND_NOT_ALLOWED = "BackendNotAllowed"
AUDIT_LOG_CORRUPT = "AuditLogCorrupt"
RATE_LIMITED = "RateLimited"
TOO_LARGE = "PayloadTooLarge"
METHOD_NOT_ALLOWED = "MethodNotAllowed"
INTERNAL = "InternalError"
# an error answer's type, also as a header: a WebSocket client cannot read the JSON body
# of a refused upgrade
ERROR_TYPE_HEADER = "X-Rlmbox-Error-Type"


def status_for(exc: errors.RlmboxError) -> tuple[int, str]:
    """``(HTTP status, wire type)`` for an rlmbox exception."""
    if isinstance(exc, errors.DaemonError):
        return exc.status or 400, exc.type or INVALID_REQUEST
    for cls in type(exc).__mro__:
        if cls.__name__ in ENGINE_STATUS:
            return ENGINE_STATUS[cls.__name__], type(exc).__name__
    return 500, type(exc).__name__


def error_body(kind: str, message: str) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message}}


def exception_for(status: int, kind: str, message: str) -> errors.RlmboxError:
    """The exception a client raises for an error answer: the rlmbox class of that name
    when there is one, else a ``DaemonError`` carrying the status and type."""
    cls = getattr(errors, kind, None)
    if (isinstance(cls, type) and issubclass(cls, errors.RlmboxError)
            and cls is not errors.DaemonError and kind in ENGINE_STATUS):
        return cls(message)
    return errors.DaemonError(message, status=status, type=kind)


_RESULT_FIELDS = tuple(f.name for f in dataclasses.fields(ExecResult))


def result_json(result: ExecResult) -> dict[str, Any]:
    """An ExecResult as a JSON object (its fields, plus ``ok``). A shallow copy, not
    ``dataclasses.asdict``: no field holds a dataclass, so the JSON is the same, and the
    deep copy cost 12 us of every exec's answer."""
    body = {name: getattr(result, name) for name in _RESULT_FIELDS}
    body["ok"] = result.ok
    return body


def result_from_json(body: dict[str, Any]) -> ExecResult:
    return ExecResult(**{name: body[name] for name in _RESULT_FIELDS if name in body})
