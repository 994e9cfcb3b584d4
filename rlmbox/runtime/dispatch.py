"""The one place a host call is decided: validate, decide, reserve, record, run, settle.

Every ``call`` frame from a sandbox goes through :meth:`CallDispatcher.handle` and nothing
else. The frame is hostile input: the function must exist, its arguments must bind to the
function's parameters (defaults filled in, so the policy decides on exactly what the host
will run), the policy decides, the ledger admits the call, a durable ``host.call.start``
record is written, and only then does the host run it; the outcome follows in a
``host.call`` record. If the log cannot take the start record, the call does not run
(fail closed). The root model's completions in the RLM loop go through the same
reserve-record-run-settle path (:meth:`CallDispatcher.complete_root`).

A sandbox's calls run on threads of their own, bounded by the cell's deadline (and, for
tools, ``limits.tool_timeout_s``): a call still running then is abandoned (see
``bounded_call``), so no host call can hold a cell, a session or a host thread past its
wall time.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from rlmbox.errors import (
    AuditError,
    AuditWriteError,
    BudgetExceeded,
    PolicyDenied,
    PolicyError,
    RlmboxError,
    SessionClosed,
    ToolError,
)
from rlmbox.lm.base import (
    Completion,
    LMProvider,
    LMRequest,
    TextSink,
    count_input_tokens,
    respond,
)
from rlmbox.policies.engine import CallRequest, Decision, PolicyEngine
from rlmbox.policies.model import PARAMETERISED_FUNCTIONS, ROOT_LM
from rlmbox.runtime.bounded_call import (
    CLOSE,
    INTERRUPT,
    CallAbandoned,
    CallCuts,
    Deadline,
    NotRun,
    run_bounded,
)
from rlmbox.runtime.crossing import UncrossableResult
from rlmbox.runtime.events import EventScope
from rlmbox.runtime.hostfns import MAX_BATCH, CallContext, HostFunction
from rlmbox.runtime.ledger import BATCHED_FORMS, Ledger, Reservation
from rlmbox.runtime.lm_params import effective_args, options_summary, root_request
from rlmbox.runtime.record_text import text_fields
from rlmbox.sandboxes.protocol import Frame

# Errors rlmbox's own handlers raise about their arguments: model code may read them in full.
_ARGUMENT_ERRORS = (TypeError, ValueError, KeyError, IndexError)
# Outcomes of calls refused before running: no budget counts them (see refused_audit_bytes).
_REFUSED_OUTCOMES = frozenset({"invalid", "denied", "budget_exceeded"})
#: A root completion has no deadline of its own (its caller's bounds it); this only makes
#: one for the thread it runs on, which the session's close can cut.
ROOT_WAIT_S = 7 * 24 * 3600.0


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


def _refusal(function: str, exc: Exception) -> HostCallRefused:
    """What model code is told about a call that failed (host internals stay out).

    A tool's exception crosses as its type only, unless it is a ``ToolError`` (whose
    message the tool's author meant for model code): a tool's own messages may carry host
    paths. rlmbox's own handlers' argument errors cross in full."""
    if isinstance(exc, HostCallRefused):
        return exc
    if isinstance(exc, PolicyDenied | BudgetExceeded):
        return HostCallRefused(type(exc).__name__, str(exc))
    if isinstance(exc, UncrossableResult):
        return HostCallRefused("HostCallError", str(exc))
    if function.startswith("tool."):
        message = str(exc) if isinstance(exc, ToolError) else type(exc).__name__
        return HostCallRefused("HostCallError", f"{function} failed: {message}")
    if isinstance(exc, _ARGUMENT_ERRORS):
        return HostCallRefused(type(exc).__name__, str(exc))
    message = str(exc) if isinstance(exc, RlmboxError) else type(exc).__name__
    return HostCallRefused("HostCallError", f"{function} failed: {message}")


def _answered(completions: Sequence[Completion]) -> dict[str, Any]:
    """What the models answered, for the call's record: their text as one body (by
    digest, in the same event) and the last model's name; nothing when none answered."""
    if not completions:
        return {}
    return {"bodies": {"completion": "\n".join(c.text for c in completions)},
            "model": completions[-1].model}


def _usage(completions: Sequence[Completion]) -> dict[str, Any]:
    """Summed usage of completions, as the ledger takes it (one pass: it is on every call)."""
    input_tokens = output_tokens = cache_write = cache_read = 0
    cost: float = 0
    for c in completions:
        input_tokens += c.input_tokens
        output_tokens += c.output_tokens
        cost += c.cost_usd
        cache_write += c.cache_write_tokens
        cache_read += c.cache_read_tokens
    return {"input_tokens": input_tokens, "output_tokens": output_tokens, "cost_usd": cost,
            "cache_write_tokens": cache_write, "cache_read_tokens": cache_read}


@dataclass
class _AdmittedCall:
    """One admitted call's facts, shared by its outcome records (in time, abandoned, late)."""

    attrs: dict[str, Any]
    reservation: Reservation
    ctx: CallContext
    started: float
    charged: int = 0   # completions already charged when the call was abandoned


class CallDispatcher:
    """Decides and runs host calls for one session."""

    def __init__(self, *, functions: Mapping[str, HostFunction], engine: PolicyEngine,
                 ledger: Ledger, scope: EventScope, tool_timeout_s: float) -> None:
        self._functions = dict(functions)
        self._engine = engine
        self._ledger = ledger
        self._scope = scope
        self._session = scope.session
        self._depth = scope.depth
        self._tool_timeout_s = tool_timeout_s
        self._refused_lock = threading.Lock()
        self._refused_bytes = 0
        #: the running cell's call waits, cut by an interrupt of that cell or the close
        self.cuts = CallCuts()
        self._closing = CallCuts()   # the root model's completions: cut by the close only
        self._handling = threading.Condition()   # guards the two below
        self._calls_in_hand = 0
        self._closed = False

    def add_functions(self, functions: Iterable[HostFunction]) -> None:
        """Makes more host functions callable; a name already present is refused (a
        running session never swaps what an earlier decision was about)."""
        added = {function.name: function for function in functions}
        taken = sorted(set(added) & set(self._functions))
        if taken:
            raise PolicyError(f"host functions {taken} are already registered")
        self._functions = {**self._functions, **added}   # one swap: calls read it unlocked

    @property
    def ledger(self) -> Ledger:
        """The budget ledger of this session's tree."""
        return self._ledger

    def _budget(self, function: str) -> dict[str, Any]:
        """The tree's usage and this function's own: what a reader of one call needs."""
        return self._ledger.usage_of(function)

    @property
    def refused_audit_bytes(self) -> int:
        """Sandbox-chosen bytes (bodies, error text) written so far for calls refused before
        they ran: no budget counts those, so the session caps them per cell."""
        with self._refused_lock:
            return self._refused_bytes

    def _error_fields(self, error: str,
                      bodies: Mapping[str, str] | None = None) -> dict[str, Any]:
        return text_fields("error", error, self._scope.audit.redact, bodies)

    def _event(self, event: str, **attrs: Any) -> None:
        if event == "host.call" and attrs.get("outcome") in _REFUSED_OUTCOMES:
            bodies = attrs.get("bodies") or {}
            size = sum(len(body) for body in bodies.values()) + len(attrs.get("error") or "")
            with self._refused_lock:
                self._refused_bytes += size
        self._scope.event(event, **attrs)

    def decide_action(self, function: str, args: dict[str, Any]) -> Decision:
        """Decides an action the host's caller starts (a file transfer) with the same
        engine as the sandbox's calls; the caller audits it."""
        return self._engine.decide(CallRequest(function=function, args=args,
                                               session_id=self._session, depth=self._depth))

    def handle(self, frame: Frame, cell_id: str, deadline: Deadline) -> Frame:
        """Returns the reply frame for one call frame, by ``deadline`` (a call still
        running then is abandoned and answered with a ``TimeoutError``; handlers that can
        end early get ``deadline.at`` in their :class:`CallContext`). Never raises for
        model input; raises ``AuditWriteError`` when the log fails (the session must stop)
        and ``SessionClosed`` once :meth:`close` began (nothing of the call recorded)."""
        with self.in_hand():
            return self._handle(frame, cell_id, deadline)

    @contextlib.contextmanager
    def in_hand(self) -> Iterator[None]:
        """Work whose records must come before ``session.end``: refused with
        ``SessionClosed`` once :meth:`close` began, and waited for by it (a call, a root
        completion, an ``rlm_query`` starting its child session)."""
        with self._handling:
            if self._closed:
                raise SessionClosed(f"session {self._session} is closed")
            self._calls_in_hand += 1
        try:
            yield
        finally:
            with self._handling:
                self._calls_in_hand -= 1
                self._handling.notify_all()

    def close(self, timeout: float) -> bool:
        """The session is closing: no call is taken from now on, the running ones are
        abandoned (as at an interrupt), and this waits, at most ``timeout`` seconds, until
        their outcome records are written, so they come before ``session.end``. Only a
        ``host.call.late``, written when an abandoned function really returns, can follow.
        Returns False if a call was still being settled at the timeout."""
        with self._handling:
            self._closed = True
        self.cuts.cut(CLOSE)
        self._closing.cut(CLOSE)
        with self._handling:
            return self._handling.wait_for(lambda: self._calls_in_hand == 0, timeout)

    def _handle(self, frame: Frame, cell_id: str, deadline: Deadline) -> Frame:
        call_id = frame["call"]
        fn_name = frame["fn"]
        try:
            function = self._lookup(fn_name, call_id, cell_id)
            bound, cut = self._bind(function, frame, call_id, cell_id)
            decision = self._decide(function.name, bound, call_id, cell_id)
            if function.batch_param is not None:
                value: Any = self._run_batch(function, bound, decision, call_id, cell_id,
                                             deadline, cut)
            else:
                value = self._run_one(function, bound, decision, call_id, cell_id, deadline,
                                      cut)
        except AuditWriteError:
            raise
        except Exception as exc:
            refused = _refusal(fn_name, exc)
            return {"t": "reply", "call": call_id, "ok": False,
                    "error": {"type": refused.kind, "message": str(refused)}}
        return {"t": "reply", "call": call_id, "ok": True, "value": value}

    def _lookup(self, fn_name: str, call_id: int, cell_id: str) -> HostFunction:
        function = self._functions.get(fn_name)
        if function is not None:
            return function
        self._event("host.call", **text_fields("function", fn_name, self._scope.audit.redact),
                    call_id=call_id, cell=cell_id, decision="deny", rule_ids=[],
                    reason="no such host function", outcome="denied")
        raise HostCallRefused("PolicyDenied", f"no host function named {fn_name!r}")

    def _bind(self, function: HostFunction, frame: Frame, call_id: int,
              cell_id: str) -> tuple[dict[str, Any], dict[str, int]]:
        """The arguments the host will act on, and what the policy's cap cut from them:
        LM parameters are made effective here, before the decision (see lm_params)."""
        try:
            bound = function.bind(frame["args"], frame["kwargs"])
            if function.name not in PARAMETERISED_FUNCTIONS \
                    or "max_tokens" not in function.params:   # a tool's max_tokens is its own
                return bound, {}
            return effective_args(self._engine.policy.lm_calls.get(function.name), bound)
        except (TypeError, ValueError) as exc:
            self._event("host.call", function=function.name, call_id=call_id, cell=cell_id,
                        outcome="invalid", **self._error_fields(str(exc)))
            raise HostCallRefused(type(exc).__name__, str(exc)) from exc

    def _decide(self, function: str, bound: dict[str, Any], call_id: int,
                cell_id: str) -> Decision:
        decision = self._engine.decide(CallRequest(
            function=function, args=bound, session_id=self._session, depth=self._depth))
        if decision.effect == "deny":   # a permit is recorded in the host.call.start event
            self._event("policy.decision", function=function, call_id=call_id, cell=cell_id,
                        decision=decision.effect, allowed=decision.allowed,
                        rule_ids=list(decision.rule_ids), reason=decision.reason,
                        mode=decision.mode)
        if not decision.allowed:
            self._event("host.call", function=function, call_id=call_id, cell=cell_id,
                        decision="deny", rule_ids=list(decision.rule_ids),
                        reason=decision.reason, args=_summary(bound), outcome="denied",
                        bodies={"args": _canonical_args(bound)})
            rules = ", ".join(decision.rule_ids) or "default deny"
            raise HostCallRefused("PolicyDenied",
                                  f"policy denied {function}: {decision.reason} ({rules})")
        return decision

    def _call_deadline(self, function: HostFunction, cell: Deadline) -> Deadline:
        """The cell's deadline, or the tool timeout when that comes first."""
        if not function.name.startswith("tool."):
            return cell
        return cell.sooner(Deadline(time.monotonic() + self._tool_timeout_s,
                                    "tool_timeout_s", self._tool_timeout_s))

    def _run_one(self, function: HostFunction, bound: dict[str, Any], decision: Decision,
                 call_id: int, cell_id: str, deadline: Deadline,
                 cut: Mapping[str, int]) -> Any:
        prompt = bound.get(function.prompt_param) if function.prompt_param else None
        system = bound.get("system")
        if isinstance(prompt, str) and isinstance(system, str):
            prompt = f"{system}\n\n{prompt}"   # the system prompt counts as prompt too
        attrs: dict[str, Any] = {"function": function.name, "call_id": call_id,
                                 "cell": cell_id, "decision": decision.effect,
                                 "rule_ids": list(decision.rule_ids), "args": _summary(bound),
                                 **({"capped": dict(cut)} if cut else {})}
        return self._metered(function.name, prompt, attrs, _canonical_args(bound),
                             lambda ctx: function.handler(ctx, bound),
                             self._call_deadline(function, deadline))

    def complete_root(self, lm: LMProvider, request: LMRequest, *, model: str,
                      on_text: TextSink | None = None) -> str:
        """One completion of the session's root model (the RLM loop), metered like a call.

        It is budgeted as ``root_lm`` (and the tree), recorded before it runs and with its
        usage after. When an input-token budget applies and the provider can count, the
        request's input is counted first and reserved (refused if it would not fit); the
        actual usage is committed. The policy's ``lm_calls.root_lm`` applies first (its
        cap, defaults and system prompt); the records show the effective parameters.
        ``on_text`` gets the reply as it streams; what is metered and audited is the same.
        Raises ``BudgetExceeded`` when the tree cannot afford it, the provider's error when
        it fails, ``AuditWriteError`` when the log cannot take it.
        """
        effective, cut = root_request(self._engine.policy.lm_calls.get(ROOT_LM), request)

        def run(ctx: CallContext) -> str:
            completion = respond(lm, effective, model=model, on_text=on_text)
            ctx.usage.append(completion)
            return completion.text

        prompt = effective.flattened()
        counted = count_input_tokens(lm, effective, model=model) \
            if self._counts_input(ROOT_LM) else None
        attrs: dict[str, Any] = {"function": ROOT_LM, "caller": "rlm_loop",
                                 "args": {**_summary({"prompt": prompt, "model": model}),
                                          **options_summary(effective)},
                                 **({"capped": cut} if cut else {})}
        if counted is not None:
            attrs["counted_input_tokens"] = counted
        # on a thread of its own, so the session's close can abandon it (recorded before
        # session.end); its caller's deadline bounds it as before
        unbounded = Deadline(time.monotonic() + ROOT_WAIT_S, ROOT_LM, ROOT_WAIT_S)
        with self.in_hand():
            text: str = self._metered(ROOT_LM, prompt, attrs,
                                      _canonical_args({"prompt": prompt, "model": model}),
                                      run, unbounded, input_tokens=counted or 0,
                                      cuts=self._closing)
        return text

    def _counts_input(self, function: str) -> bool:
        """Whether an input-token budget binds ``function`` or its single form (counting
        costs a request)."""
        budgets = self._ledger.budgets
        if budgets.tree.input_tokens is not None:
            return True
        names = (function, BATCHED_FORMS.get(function))
        return any((own := budgets.functions.get(name)) is not None
                   and own.input_tokens is not None for name in names if name)

    def _metered(self, name: str, prompt: Any, attrs: dict[str, Any], args_body: str,
                 run: Callable[[CallContext], Any], deadline: Deadline, *,
                 input_tokens: int = 0, cuts: CallCuts | None = None) -> Any:
        """Reserve, write the start record durably, run, settle, write the outcome.

        The start record is synced before ``run``: a log that cannot take it raises
        ``AuditWriteError`` here, the reservation is refunded and nothing runs. ``run``
        goes on a thread of its own and is abandoned at ``deadline``, or when ``cuts``
        (the cell's, unless given) is cut.
        """
        started = time.perf_counter()
        ctx = CallContext(self._session, self._depth, deadline=deadline.at)
        attrs = {**attrs, "budget_before": self._budget(name)}
        chars = len(prompt) if isinstance(prompt, str) else 0
        try:
            reservation = self._ledger.reserve(name, depth=self._depth, prompt_chars=chars,
                                               input_tokens=input_tokens)
        except BudgetExceeded as exc:
            self._event("limit.exceeded", function=name, call_id=attrs.get("call_id"),
                        cell=attrs.get("cell"), budget=exc.budget, used=exc.used,
                        limit=exc.limit)
            self._event("host.call", **attrs, outcome="budget_exceeded", reason=str(exc),
                        budget_after=self._budget(name),
                        bodies={"args": args_body})
            raise
        try:
            self._scope.durable_event("host.call.start", **attrs, bodies={"args": args_body})
        except BaseException:
            self._ledger.refund(reservation)
            raise
        call = _AdmittedCall(attrs, reservation, ctx, started)
        if self._counts_input(name):
            ctx.hold_input = lambda tokens: self._hold_input(call, tokens)
            ctx.try_hold_input = lambda tokens: self._try_hold_input(call, tokens)
        try:
            value = run_bounded(
                lambda: run(ctx), deadline, name=name,
                on_abandon=lambda abandoned: self._abandon(call, abandoned),
                on_late=lambda error: self._late(call, error),
                cuts=self.cuts if cuts is None else cuts)
        except CallAbandoned as abandoned:
            ctx.cancel()
            if abandoned.deadline.limit != "tool_timeout_s":
                # what stops the cell ended this call: the cell was reached by it
                (self.cuts if cuts is None else cuts).note_reached()
            raise HostCallRefused("TimeoutError", f"{name} abandoned: {abandoned}") from abandoned
        except Exception as exc:
            # the handler ran: whatever it did before raising is done, so the call counts
            self._ledger.commit(reservation, **_usage(ctx.usage))
            if not isinstance(exc, AuditWriteError):
                outcome = "denied" if isinstance(exc, PolicyDenied | BudgetExceeded) else "error"
                self._finish(attrs, ctx, started, outcome, error=f"{type(exc).__name__}: {exc}")
            raise
        used = _usage(ctx.usage)
        self._ledger.commit(reservation, **used)
        self._finish(attrs, ctx, started, "ok", used=used)
        return value

    def _hold_input(self, call: _AdmittedCall, tokens: int) -> None:
        """A sub-call's input, counted on its own thread before it is sent: held, or the
        refusal recorded with the budget it would cross (the handler then sends nothing)."""
        try:
            self._ledger.hold_input(call.reservation, tokens)
        except BudgetExceeded as exc:
            self._event("limit.exceeded", function=call.attrs["function"],
                        call_id=call.attrs.get("call_id"), cell=call.attrs.get("cell"),
                        budget=exc.budget, used=exc.used, limit=exc.limit)
            raise

    def _try_hold_input(self, call: _AdmittedCall, tokens: int) -> bool:
        """Holds ``tokens`` if they fit the input budgets; nothing recorded either way."""
        try:
            self._ledger.hold_input(call.reservation, tokens)
        except BudgetExceeded:
            return False
        return True

    def _abandon(self, call: _AdmittedCall, abandoned: CallAbandoned) -> None:
        """The host stops waiting: the call counts as spent (usage so far charged) and
        the abandonment is recorded before the caller hears of it."""
        charged = call.ctx.usage[:]   # one copy: the worker may append
        call.charged = len(charged)
        used = _usage(charged)
        self._ledger.abandon(call.reservation, **used)
        # the record states what the ledger charged: a completion landing from here on is
        # the late record's (it was stated in both, and charged once)
        self._finish(call.attrs, call.ctx, call.started, "abandoned", error=str(abandoned),
                     used=used, completions=charged, limit=abandoned.deadline.limit)

    def _late(self, call: _AdmittedCall, error: BaseException | None) -> None:
        """An abandoned call really ended (on its own thread): its slot frees, its late
        usage is charged and recorded. The log may be closed by now (the runtime ended) or
        failed (which stops every later call anyway); the ledger is charged regardless."""
        late = call.ctx.usage[call.charged:]
        used = _usage(late)
        self._ledger.finish_abandoned(call.reservation, **used)
        if isinstance(error, NotRun):
            return   # it never ran: its abandoned record says all there is
        function = str(call.attrs["function"])
        with contextlib.suppress(AuditError):
            self._scope.event(
                "host.call.late", **_answered(late), function=function,
                call_id=call.attrs.get("call_id"),
                cell=call.attrs.get("cell"), outcome="ok" if error is None else "error",
                error=None if error is None else type(error).__name__,
                tokens_in=used["input_tokens"], tokens_out=used["output_tokens"],
                cost_usd=used["cost_usd"],
                latency_ms=round((time.perf_counter() - call.started) * 1000, 3),
                budget_after=self._budget(function))

    def _finish(self, attrs: dict[str, Any], ctx: CallContext, started: float, outcome: str,
                error: str | None = None, used: Mapping[str, Any] | None = None,
                completions: Sequence[Completion] | None = None, **extra: Any) -> None:
        """The outcome record of ``completions`` (``ctx.usage`` unless the caller took its
        own copy); ``used`` is their ``_usage`` when the caller has it."""
        done = ctx.usage if completions is None else completions
        used = _usage(done) if used is None else used
        answered = _answered(done)
        bodies = answered.pop("bodies", None)
        attrs = {**attrs, **answered}
        fields = {"error": None, "bodies": bodies} if error is None else \
            self._error_fields(error, bodies)
        self._event(
            "host.call", **fields, **attrs, **extra, outcome=outcome,
            tokens_in=used["input_tokens"], tokens_out=used["output_tokens"],
            cache_write_tokens=used["cache_write_tokens"],
            cache_read_tokens=used["cache_read_tokens"], cost_usd=used["cost_usd"],
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
            budget_after=self._budget(str(attrs["function"])))

    def _run_batch(self, function: HostFunction, bound: dict[str, Any], decision: Decision,
                   call_id: int, cell_id: str, deadline: Deadline,
                   cut: Mapping[str, int]) -> list[str]:
        """Runs the items on threads of this batch (never a shared pool: a batch inside a
        batch's child cannot wait on threads its parent holds), no more of them than the
        tree's free ``max_concurrent`` slots; an item past a limit fails alone."""
        items = bound.get(function.batch_param or "")
        attrs = {"function": function.name, "call_id": call_id, "cell": cell_id,
                 "decision": decision.effect, "rule_ids": list(decision.rule_ids),
                 "args": _summary(bound)}
        if not isinstance(items, list):
            self._refuse_shape(attrs, "TypeError", f"{function.name}: expects a list of prompts")
        if len(items) > MAX_BATCH:
            self._refuse_shape(attrs, "ValueError",
                               f"{function.name}: at most {MAX_BATCH} prompts a call")
        if not items:   # answered without running anything, recorded all the same
            self._event("host.call", **attrs, outcome="ok")
            return []
        extra = {k: v for k, v in bound.items() if k != function.batch_param}
        results: list[str | None] = [None] * len(items)
        pending = iter(range(len(items)))
        lock = threading.Lock()
        failed: list[AuditWriteError] = []

        def work() -> None:
            while not failed and not deadline.passed() and not self.cuts.interrupted:
                with lock:
                    index = next(pending, None)
                if index is None:
                    return
                single = {**extra, function.prompt_param or "prompt": items[index]}
                try:
                    results[index] = str(self._run_one(function, single, decision, call_id,
                                                       cell_id, deadline, cut))
                except AuditWriteError as exc:
                    failed.append(exc)
                except Exception as exc:
                    refused = _refusal(function.name, exc)
                    results[index] = f"Error: {refused.kind}: {refused}"

        width = max(1, min(len(items), self._ledger.free_slots(function.name)))
        # each worker in the caller's context, as every host call is (bounded_call.py):
        # context-local state (a trace's running call, a cluster cell's driver channel)
        # follows the items onto their threads
        workers = [threading.Thread(target=contextvars.copy_context().run, args=(work,),
                                    name=f"rlmbox-batch-{function.name}", daemon=True)
                   for _ in range(width)]
        for worker in workers:
            worker.start()
        for worker in workers:   # each item is bounded by the deadline, so is the batch
            worker.join()
        if failed:
            raise failed[0]
        if None in results:   # what stops the cell stopped these: it reached the cell
            self.cuts.note_reached()
        # an item never run names what stopped it: the cell's cut (an interrupt, the
        # close) or the deadline (review s15b: a cut was reported as the deadline run out)
        stopped = f"{deadline.limit} ({deadline.seconds:g} s) ran out"
        if self.cuts.interrupted and self.cuts.limit in (INTERRUPT, CLOSE):
            stopped = str(CallAbandoned(Deadline(0.0, self.cuts.limit, 0.0)))
        return [f"Error: TimeoutError: {function.name} item not run: {stopped}"
                if result is None else result for result in results]

    def _refuse_shape(self, attrs: dict[str, Any], kind: str, message: str) -> NoReturn:
        """A permitted batch whose shape the host refuses: recorded, never run."""
        self._event("host.call", **attrs, outcome="invalid", **self._error_fields(message))
        raise HostCallRefused(kind, message)
