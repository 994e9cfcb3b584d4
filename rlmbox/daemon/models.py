"""Request and response bodies as pydantic models: the validation and the OpenAPI
schemas come from the same definitions, so they cannot drift apart.

Requests are strict (no coercion: ``"1"`` is not a number, ``true`` is not 1) and refuse
unknown fields, so a typo is an error rather than a silently ignored option.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rlmbox.policies.model import BackendName

MAX_CODE_CHARS = 8 * 1024 * 1024
MAX_TIMEOUT_S = 24 * 3600.0
Backend = BackendName   # one Literal, the policy's; BACKEND_NAMES is derived from it


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class CreateSessionRequest(_Request):
    """``POST /v1/sessions``: a policy by name (one the operator loaded), never a policy."""

    policy: str | None = Field(default=None, min_length=1, max_length=200)
    backend: Backend | None = None
    context: str | dict[str, Any] | list[Any] | None = None


class ExecRequest(_Request):
    """``POST /v1/sessions/{id}/exec``: one cell; ``timeout_s`` can only shorten the
    policy's cell limit."""

    code: str = Field(max_length=MAX_CODE_CHARS)
    timeout_s: float | None = Field(default=None, gt=0, le=MAX_TIMEOUT_S, allow_inf_nan=False)


class StreamExecRequest(ExecRequest):
    """The first message of ``GET .../exec/stream``: an ExecRequest; ``root_text`` asks
    for the replies of the cell's ``rlm_query`` children's root models as they stream."""

    root_text: bool = False


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Health(_Response):
    status: Literal["ok"]
    version: str


class SessionInfo(_Response):
    id: str
    policy: str
    policy_sha256: str
    backend: str
    state: Literal["open", "closed", "lost", "killed"]
    created: float
    closed: float | None = None
    reason: str | None = None


class SessionList(_Response):
    sessions: list[SessionInfo]
    next_before: str | None   # the ``before`` of the next page; None on the last


class ExecResultBody(_Response):
    status: Literal["ok", "error", "interrupted", "killed"]
    ok: bool
    stdout: str
    stderr: str
    error: str | None
    answer: Any
    has_answer: bool
    duration_s: float
    host_calls: int
    truncated: bool
    dropped: dict[str, int]
    cell_id: str


class FileEntryBody(_Response):
    name: str
    size: int
    kind: Literal["file", "dir", "symlink", "other"]


class FileListing(_Response):
    entries: list[FileEntryBody]


class FileWritten(_Response):
    path: str
    size: int


class InterruptResult(_Response):
    interrupted: bool = Field(description="false when no cell was running")


class AuditPage(_Response):
    events: list[dict[str, Any]]
    next_after_seq: int | None = Field(
        description="pass as after_seq for the next page; null when this page is the last")


class ErrorDetail(_Response):
    type: str
    message: str


class ErrorBody(_Response):
    error: ErrorDetail
