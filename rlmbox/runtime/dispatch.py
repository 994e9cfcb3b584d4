"""The one place a host call is decided: validate, decide, reserve, run, settle, audit.

Every ``call`` frame from a sandbox goes through :meth:`CallDispatcher.handle` and nothing
else. The frame is hostile input: the function must exist, its arguments must bind to the
function's parameters, the policy decides on the bound arguments, the ledger admits the
call, and only then does the host run it. Each step is recorded in the audit log before
the reply goes back; if the log cannot be written, the call is refused (fail closed).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rlmbox.errors import AuditWriteError, BudgetExceeded, PolicyDenied, RlmboxError
from rlmbox.policies.engine import CallRequest, Decision, PolicyEngine
from rlmbox.runtime.events import EventScope
from rlmbox.runtime.hostfns import MAX_BATCH, CallContext, HostFunction
from rlmbox.runtime.ledger import Ledger, Reservation
from rlmbox.sandboxes.protocol import Frame

_SUMMARY_CHARS = 120


class HostCallRefused(Exception):
    """Internal: a call ended before running; carries the error to reply with."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _canonical_args(value: Any) -> str:
    """The arguments as stored by digest beside the log (the chain holds the digest)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=repr)


def _summary(args: Mapping[str, Any]) -> dict[str, Any]:
    """A short, shape-only view of arguments for the audit record (bodies go by digest)."""
    out: dict[str, Any] = {}
    for key, value in args.items():
        if isinstance(value, str):
            out[key] = {"chars": len(value)}
        elif isinstance(value, list):
            out[key] = {"items": len(value)}
        elif isinstance(value, int | float | bool) or value is None:
            out[key] = value
        else:
            out[key] = {"type": type(value).__name__}
    return out


class CallDispatcher:
    """Decides and runs host calls for one session."""

    def __init__(self, *, functions: Mapping[str, HostFunction], engine: PolicyEngine,
                 ledger: Ledger, scope: EventScope, executor: ThreadPoolExecutor) -> None:
        self._functions = dict(functions)
        self._engine = engine
        self._ledger = ledger
        self._scope = scope
        self._session = scope.session
        self._depth = scope.depth
        self._executor = executor

    @property
    def ledger(self) -> Ledger:
        """The budget ledger of this session's tree."""
        return self._ledger

    def _budget(self, function: str) -> dict[str, Any]:
        """The tree's usage and this function's own: what a reader of one call needs."""
        snapshot = self._ledger.snapshot()
        own = snapshot["functions"].get(function)
        return {"tree": snapshot["tree"], **({function: own} if own else {})}

    def _event(self, event: str, **attrs: Any) -> None:
        self._scope.event(event, **attrs)

    def handle(self, frame: Frame, cell_id: str) -> Frame:
        """Returns the reply frame for one call frame. Never raises for model input;
        raises ``AuditWriteError`` when the log fails (the session must stop)."""
        call_id = frame["call"]
        started = time.perf_counter()
        fn_name = frame["fn"]
        try:
            function = self._functions.get(fn_name)
            if function is None:
                self._refuse_unknown(fn_name, call_id, cell_id)
            assert function is not None  # noqa: S101 - _refuse_unknown raised otherwise
            try:
                bound = function.bind(frame["args"], frame["kwargs"])
            except TypeError as exc:
                raise HostCallRefused("TypeError", str(exc)) from exc
            decision = self._decide(function.name, bound, call_id, cell_id)
            if function.batch_param is not None:
                value = self._run_batch(function, bound, decision, call_id, cell_id, started)
            else:
                value = self._run_one(function, bound, decision, call_id, cell_id, started)
        except HostCallRefused as refused:
            return {"t": "reply", "call": call_id, "ok": False,
                    "error": {"type": refused.kind, "message": str(refused)}}
        return {"t": "reply", "call": call_id, "ok": True, "value": value}

    def _refuse_unknown(self, fn_name: str, call_id: int, cell_id: str) -> None:
        self._event("host.call", function=fn_name[:128], call_id=call_id, cell=cell_id,
                    decision="deny", rule_ids=[], reason="no such host function",
                    outcome="denied")
        raise HostCallRefused("PolicyDenied", f"no host function named {fn_name!r}")

    def _decide(self, function: str, bound: dict[str, Any], call_id: int,
                cell_id: str) -> Decision:
        decision = self._engine.decide(CallRequest(
            function=function, args=bound, session_id=self._session, depth=self._depth))
        if decision.effect == "deny":   # a permit is recorded in the host.call event itself
            self._event("policy.decision", function=function, call_id=call_id, cell=cell_id,
                        decision=decision.effect, allowed=decision.allowed,
                        rule_ids=list(decision.rule_ids), reason=decision.reason,
                        mode=decision.mode)
        if not decision.allowed:
            self._event("host.call", function=function, call_id=call_id, cell=cell_id,
                        decision="deny", rule_ids=list(decision.rule_ids),
                        reason=decision.reason, args=_summary(bound), outcome="denied")
            rules = ", ".join(decision.rule_ids) or "default deny"
            raise HostCallRefused("PolicyDenied",
                                  f"policy denied {function}: {decision.reason} ({rules})")
        return decision

    def _reserve(self, function: HostFunction, prompt: Any) -> Reservation | None:
        if not function.budgeted:
            return None
        chars = len(prompt) if isinstance(prompt, str) else 0
        return self._ledger.reserve(function.name, depth=self._depth, prompt_chars=chars)

    def _run_one(self, function: HostFunction, bound: dict[str, Any], decision: Decision,
                 call_id: int, cell_id: str, started: float) -> Any:
        prompt = bound.get(function.prompt_param) if function.prompt_param else None
        ctx = CallContext(self._session, self._depth)
        before = self._budget(function.name)
        text = _canonical_args(bound)
        attrs: dict[str, Any] = {"function": function.name, "call_id": call_id,
                                 "cell": cell_id, "decision": decision.effect,
                                 "rule_ids": list(decision.rule_ids),
                                 "args": _summary(bound), "budget_before": before}
        try:
            reservation = self._reserve(function, prompt)
        except BudgetExceeded as exc:
            self._event("limit.exceeded", function=function.name, call_id=call_id,
                        cell=cell_id, budget=exc.budget, used=exc.used, limit=exc.limit)
            self._event("host.call", **attrs, outcome="budget_exceeded", reason=str(exc),
                        budget_after=self._budget(function.name), bodies={"args": text})
            raise HostCallRefused("BudgetExceeded", str(exc)) from exc
        try:
            value = function.handler(ctx, bound)
        except (PolicyDenied, BudgetExceeded) as exc:
            self._settle(reservation, ctx, ok=False)
            self._finish(attrs, ctx, started, "denied", error=str(exc), bodies={"args": text})
            raise HostCallRefused(type(exc).__name__, str(exc)) from exc
        except (TypeError, ValueError, KeyError, IndexError) as exc:
            self._settle(reservation, ctx, ok=False)
            self._finish(attrs, ctx, started, "error", error=f"{type(exc).__name__}: {exc}",
                         bodies={"args": text})
            raise HostCallRefused(type(exc).__name__, str(exc)) from exc
        except AuditWriteError:
            raise
        except Exception as exc:
            self._settle(reservation, ctx, ok=False)
            kind = "HostCallError"
            self._finish(attrs, ctx, started, "error", error=f"{type(exc).__name__}: {exc}",
                         bodies={"args": text})
            message = str(exc) if isinstance(exc, RlmboxError) else type(exc).__name__
            raise HostCallRefused(kind, f"{function.name} failed: {message}") from exc
        self._settle(reservation, ctx, ok=True)
        self._finish(attrs, ctx, started, "ok", bodies={"args": text})
        return value

    def _settle(self, reservation: Reservation | None, ctx: CallContext, *, ok: bool) -> None:
        if reservation is None:
            return
        if not ok and not ctx.usage:
            self._ledger.refund(reservation)
            return
        self._ledger.commit(reservation,
                            input_tokens=sum(c.input_tokens for c in ctx.usage),
                            output_tokens=sum(c.output_tokens for c in ctx.usage),
                            cost_usd=sum(c.cost_usd for c in ctx.usage))

    def _finish(self, attrs: dict[str, Any], ctx: CallContext, started: float, outcome: str,
                error: str | None = None, bodies: dict[str, str] | None = None) -> None:
        if ctx.usage:   # LM bodies by digest, in the same event as the call
            bodies = {**(bodies or {}),
                      "completion": "\n".join(c.text for c in ctx.usage)}
            attrs = {**attrs, "model": ctx.usage[-1].model}
        self._scope.event(
            "host.call", bodies=bodies, **attrs, outcome=outcome, error=error,
            tokens_in=sum(c.input_tokens for c in ctx.usage),
            tokens_out=sum(c.output_tokens for c in ctx.usage),
            cost_usd=sum(c.cost_usd for c in ctx.usage),
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            budget_after=self._budget(str(attrs["function"])))

    def _run_batch(self, function: HostFunction, bound: dict[str, Any], decision: Decision,
                   call_id: int, cell_id: str, started: float) -> list[str]:
        items = bound.get(function.batch_param or "")
        if not isinstance(items, list):
            raise HostCallRefused("TypeError", f"{function.name}: expects a list of prompts")
        if len(items) > MAX_BATCH:
            raise HostCallRefused("ValueError",
                                  f"{function.name}: at most {MAX_BATCH} prompts a call")
        extra = {k: v for k, v in bound.items() if k != function.batch_param}

        def one(prompt: Any) -> str:
            single = {**extra, function.prompt_param or "prompt": prompt}
            try:
                return str(self._run_one(function, single, decision, call_id, cell_id,
                                         time.perf_counter()))
            except HostCallRefused as refused:
                return f"Error: {refused.kind}: {refused}"

        return list(self._executor.map(one, items))
