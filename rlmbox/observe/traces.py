"""OpenTelemetry spans of the engine, read off the audit stream (extra ``otel``).

One span per session, cell and host call. A child session (``rlm_query``) starts inside
its parent's ``rlm_query`` call: the call's span is made the running call of the context
the call runs in (a context variable, which the engine carries onto the call's own
thread), so it is the child session's parent and a whole RLM tree is one trace. A root session is
parented by whatever span the caller has current (an embedding program's own span).

Attributes carry what the audit record holds about the action (backend, policy digest,
decision, rule ids, tokens, cost) and digests of bodies, never code, prompts or outputs.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode, Tracer, TracerProvider
from opentelemetry.util.types import AttributeValue

TRACER_NAME = "rlmbox"
SESSION_SPAN = "rlmbox.session"
CELL_SPAN = "rlmbox.cell"
HOST_CALL_SPAN = "rlmbox.host_call"

# record key -> span attribute, for the scalar facts a span may carry
_SESSION_FACTS = {"session": "rlmbox.session.id", "parent": "rlmbox.session.parent",
                  "depth": "rlmbox.session.depth", "tenant": "rlmbox.tenant",
                  "policy": "rlmbox.policy.name", "policy_sha256": "rlmbox.policy.sha256"}
_CALL_FACTS = {"function": "rlmbox.call.function", "call_id": "rlmbox.call.id",
               "decision": "rlmbox.call.decision", "rule_ids": "rlmbox.call.rule_ids",
               "outcome": "rlmbox.call.outcome", "model": "rlmbox.lm.model",
               "tokens_in": "rlmbox.lm.tokens_in", "tokens_out": "rlmbox.lm.tokens_out",
               "cost_usd": "rlmbox.lm.cost_usd", "latency_ms": "rlmbox.call.latency_ms",
               "args_sha256": "rlmbox.call.args_sha256",
               "completion_sha256": "rlmbox.lm.completion_sha256"}
_CELL_FACTS = {"cell": "rlmbox.cell.id", "code_sha256": "rlmbox.cell.code_sha256",
               "status": "rlmbox.cell.status", "duration_s": "rlmbox.cell.duration_s",
               "host_calls": "rlmbox.cell.host_calls", "truncated": "rlmbox.cell.truncated",
               "stdout_sha256": "rlmbox.cell.stdout_sha256",
               "stderr_sha256": "rlmbox.cell.stderr_sha256"}
_END_FACTS = {"reason": "rlmbox.session.end_reason", "cells": "rlmbox.session.cells",
              "death_reason": "rlmbox.session.death_reason"}


def _facts(record: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, AttributeValue]:
    """The record's values under ``names`` that a span attribute can hold."""
    out: dict[str, AttributeValue] = {}
    for key, attribute in names.items():
        value = record.get(key)
        if isinstance(value, str | bool | int | float):
            out[attribute] = value
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            out[attribute] = [str(v) for v in value]
    return out


# (session, span) of the host call the current context is running
_RUNNING_CALL: ContextVar[tuple[str, Span] | None] = ContextVar("rlmbox_running_call",
                                                               default=None)


@dataclass
class _OpenCall:
    session: str
    function: str
    call_id: Any
    span: Span
    token: Token[tuple[str, Span] | None]


class SpanTree:
    """One Runtime's observer: opens and ends spans as the audit records arrive."""

    def __init__(self, provider: TracerProvider) -> None:
        self._tracer: Tracer = provider.get_tracer(TRACER_NAME)
        self._sessions: dict[str, Span] = {}
        self._cells: dict[tuple[str, str], Span] = {}
        self._calls: dict[int, list[_OpenCall]] = {}   # by thread: the calls it is running
        self._lock = threading.Lock()

    def audit_synced(self, seconds: float) -> None:
        """Sync timing is a metric, not a span."""

    def audit_failed(self) -> None:
        with self._lock:
            spans = list(self._sessions.values())
        for span in spans:
            span.add_event("audit.write_failed")

    def record(self, record: Mapping[str, Any]) -> None:
        event = record.get("event")
        session = record.get("session")
        if not isinstance(session, str):
            return
        with self._lock:
            if event == "session.create":
                self._session_started(session, record)
            elif event == "session.end":
                self._session_ended(session, record)
            elif event == "code.exec":
                self._cell_started(session, record)
            elif event == "cell.result":
                self._cell_ended(session, record)
            elif event == "host.call.start":
                self._call_started(session, record)
            elif event == "host.call":
                self._call_ended(session, record)
            elif event in ("limit.exceeded", "sandbox.killed") and session in self._sessions:
                self._sessions[session].add_event(str(event), _facts(
                    record, {"limit": "rlmbox.limit", "budget": "rlmbox.budget",
                             "cell": "rlmbox.cell.id", "function": "rlmbox.call.function"}))

    # --- sessions ----------------------------------------------------------------------

    def _session_started(self, session: str, record: Mapping[str, Any]) -> None:
        attributes = _facts(record, _SESSION_FACTS)
        sandbox = record.get("sandbox")
        if isinstance(sandbox, Mapping):
            attributes.update(_facts(sandbox, {"backend": "rlmbox.backend",
                                               "runtime": "rlmbox.sandbox.runtime",
                                               "warm": "rlmbox.sandbox.warm"}))
        parent = self._parent_of(record.get("parent"))
        context = trace.set_span_in_context(parent) if parent is not None else None
        self._sessions[session] = self._tracer.start_span(
            SESSION_SPAN, context=context, attributes=attributes)

    def _parent_of(self, parent: Any) -> Span | None:
        """The parent's call this context runs (its ``rlm_query``), else the parent
        session itself; ``None`` for a root session."""
        if not isinstance(parent, str):
            return None
        running = _RUNNING_CALL.get()
        if running is not None and running[0] == parent:
            return running[1]
        return self._sessions.get(parent)

    def _session_ended(self, session: str, record: Mapping[str, Any]) -> None:
        span = self._sessions.pop(session, None)
        for key in [k for k in self._cells if k[0] == session]:
            self._cells.pop(key).end()   # a cell cut short by a dead session
        if span is None:
            return
        span.set_attributes(_facts(record, _END_FACTS))
        if record.get("death_reason"):
            span.set_status(Status(StatusCode.ERROR, "the sandbox was killed"))
        span.end()

    # --- cells -------------------------------------------------------------------------

    def _cell_started(self, session: str, record: Mapping[str, Any]) -> None:
        parent = self._sessions.get(session)
        cell = record.get("cell")
        if parent is None or not isinstance(cell, str):
            return
        self._cells[(session, cell)] = self._tracer.start_span(
            CELL_SPAN, context=trace.set_span_in_context(parent),
            attributes=_facts(record, _CELL_FACTS))

    def _cell_ended(self, session: str, record: Mapping[str, Any]) -> None:
        span = self._cells.pop((session, str(record.get("cell"))), None)
        if span is None:
            return
        span.set_attributes(_facts(record, _CELL_FACTS))
        if record.get("status") != "ok":
            span.set_status(Status(StatusCode.ERROR, f"cell {record.get('status')}"))
        span.end()

    # --- host calls --------------------------------------------------------------------

    def _call_parent(self, session: str, record: Mapping[str, Any]) -> Span | None:
        cell = record.get("cell")
        found = self._cells.get((session, cell)) if isinstance(cell, str) else None
        return found or self._sessions.get(session)

    def _call_started(self, session: str, record: Mapping[str, Any]) -> None:
        parent = self._call_parent(session, record)
        if parent is None:
            return
        span = self._tracer.start_span(HOST_CALL_SPAN, context=trace.set_span_in_context(
            parent), attributes=_facts(record, _CALL_FACTS))
        token = _RUNNING_CALL.set((session, span))
        self._calls.setdefault(threading.get_ident(), []).append(
            _OpenCall(session, str(record.get("function")), record.get("call_id"), span,
                      token))

    def _call_ended(self, session: str, record: Mapping[str, Any]) -> None:
        span = self._take_call(session, record)
        if span is None:   # refused before it ran (denied, invalid, over budget)
            parent = self._call_parent(session, record)
            if parent is None:
                return
            span = self._tracer.start_span(HOST_CALL_SPAN, context=trace.set_span_in_context(
                parent))
        span.set_attributes(_facts(record, _CALL_FACTS))
        if record.get("outcome") != "ok":
            span.set_status(Status(StatusCode.ERROR, f"call {record.get('outcome')}"))
        span.end()

    def _take_call(self, session: str, record: Mapping[str, Any]) -> Span | None:
        """The matching call this thread started, removed from its stack."""
        stack = self._calls.get(threading.get_ident(), [])
        for index in range(len(stack) - 1, -1, -1):
            call = stack[index]
            if call.session == session and call.function == str(record.get("function")) \
                    and call.call_id == record.get("call_id"):
                del stack[index]
                if not stack:
                    self._calls.pop(threading.get_ident(), None)
                with contextlib.suppress(ValueError, RuntimeError):   # another context's
                    _RUNNING_CALL.reset(call.token)
                return call.span
        return None
