"""A client for the rlmbox daemon (sync; an async client is not built yet).

    from rlmbox.runtime.client import Client
    with Client(socket="/run/rlmbox/rlmbox.sock", token=token) as c:
        s = c.create_session(policy="default", context="...")
        r = c.exec(s["id"], "print(len(context))")     # an ExecResult
        c.close_session(s["id"])

Errors come back as the exceptions an embedded caller would see: the daemon sends the
rlmbox error type's name, and the client raises that class (``SessionClosed``,
``PolicyDenied``, ...); errors of the daemon itself (bad token, not found, invalid
request) raise ``DaemonError`` with ``status`` and ``type``.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from rlmbox.errors import DaemonError
from rlmbox.runtime.results import ExecResult
from rlmbox.runtime.server.wire import exception_for, result_from_json

_UNIX_BASE = "http://rlmbox"


class Client:
    """Talks to one daemon over its Unix socket (``socket=``) or TCP (``url=``)."""

    def __init__(self, *, token: str, socket: str | Path | None = None,
                 url: str | None = None, timeout: float = 600.0) -> None:
        if (socket is None) == (url is None):
            raise ValueError("give exactly one of socket= or url=")
        transport = httpx.HTTPTransport(uds=str(socket)) if socket is not None else None
        self._http = httpx.Client(
            base_url=url or _UNIX_BASE, transport=transport,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(timeout, connect=10.0))

    def _call(self, method: str, path: str, *, json: Any = None,
              params: dict[str, Any] | None = None) -> Any:
        try:
            response = self._http.request(method, path, json=json, params=params)
        except httpx.HTTPError as exc:
            raise DaemonError(f"cannot reach the rlmbox daemon: {exc}", type="Unreachable") \
                from exc
        if response.status_code == 204:
            return None
        try:
            body = response.json()
        except ValueError as exc:
            raise DaemonError(f"the daemon answered {response.status_code} without JSON",
                              status=response.status_code, type="BadResponse") from exc
        if response.is_error:
            error = body.get("error") if isinstance(body, dict) else None
            if not isinstance(error, dict):
                raise DaemonError(f"the daemon answered {response.status_code}",
                                  status=response.status_code, type="BadResponse")
            raise exception_for(response.status_code, str(error.get("type", "")),
                                str(error.get("message", "")))
        return body

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/v1/health")
        return result

    def create_session(self, *, policy: str | None = None, backend: str | None = None,
                       context: Any = None) -> dict[str, Any]:
        """Starts a session; returns its record (``id``, ``policy``, ``state``, ...)."""
        body = {k: v for k, v in (("policy", policy), ("backend", backend),
                                  ("context", context)) if v is not None}
        result: dict[str, Any] = self._call("POST", "/v1/sessions", json=body)
        return result

    def exec(self, session_id: str, code: str, *, timeout: float | None = None) -> ExecResult:
        body: dict[str, Any] = {"code": code}
        if timeout is not None:
            body["timeout_s"] = timeout
        return result_from_json(self._call("POST", f"/v1/sessions/{session_id}/exec",
                                           json=body))

    def session(self, session_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/v1/sessions/{session_id}")
        return result

    def sessions(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/v1/sessions")["sessions"]
        return result

    def close_session(self, session_id: str) -> None:
        self._call("DELETE", f"/v1/sessions/{session_id}")

    def audit(self, *, session: str | None = None, after_seq: int = 0,
              limit: int = 100) -> tuple[list[dict[str, Any]], int | None]:
        """One page of the caller's audit events and the ``after_seq`` of the next."""
        params: dict[str, Any] = {"after_seq": after_seq, "limit": limit}
        if session is not None:
            params["session"] = session
        page = self._call("GET", "/v1/audit", params=params)
        return page["events"], page["next_after_seq"]

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
