"""Runtime: the embedded entry point. Owns the policy, backends, warm pools and audit log.

    from rlmbox import Runtime
    rt = Runtime(policy="default")
    with rt.session(context=big_text) as s:
        r = s.exec("print(len(context))")

Creating a session is where fail-closed checks happen: the backend must have *proven*
(by probing) every isolation property the policy requires, or the session is refused
before any code runs.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import os
import secrets
import threading
import types
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from rlmbox.audit.log import AuditLog
from rlmbox.errors import IsolationUnavailable, PolicyError, SessionClosed
from rlmbox.lm.base import LMProvider
from rlmbox.lm.hosted import register_secrets
from rlmbox.lm.unconfigured import UnconfiguredLM
from rlmbox.policies.engine import PolicyEngine
from rlmbox.policies.model import Policy, load_policy
from rlmbox.runtime.agent_init import agent_config, await_init, send_init
from rlmbox.runtime.context import ContextStore
from rlmbox.runtime.dispatch import CallDispatcher
from rlmbox.runtime.events import AuditSink, EventScope
from rlmbox.runtime.gate import OpenGate, SessionGate
from rlmbox.runtime.hostfns import (
    HostFunction,
    context_functions,
    llm_query,
    llm_query_batched,
    tool,
)
from rlmbox.runtime.ledger import Ledger
from rlmbox.runtime.observe import Observer, observed
from rlmbox.runtime.pool import WarmPool
from rlmbox.runtime.recursion import frontend_rlm_functions, rlm_functions
from rlmbox.runtime.session import Session
from rlmbox.runtime.staging import private_contexts_dir, stage_context
from rlmbox.runtime.supply import SandboxSupply, spec_for
from rlmbox.sandboxes.base import Backend, IsolationProperty, Sandbox, SandboxSpec

if TYPE_CHECKING:   # optional extras: imported only when a caller passes them
    from opentelemetry.trace import TracerProvider
    from prometheus_client import CollectorRegistry

DEFAULT_POOL_SIZE = 2


Subcall = Callable[[str, str | None], str]


class RuntimeState(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


def default_audit_dir() -> Path:
    """``$RLMBOX_AUDIT_DIR``, else ``$XDG_STATE_HOME/rlmbox/audit`` (``~/.local/state``)."""
    explicit = os.environ.get("RLMBOX_AUDIT_DIR")
    if explicit:
        return Path(explicit)
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "rlmbox" / "audit"


def _refuse_unbindable_lm_calls(policy: Policy) -> None:
    """A frontend's own sub-call runs ``rlm_query``, so its ``lm_calls`` limits could not
    bind: such a policy is refused rather than silently unenforced."""
    bypassed = sorted({"rlm_query", "rlm_query_batched"} & set(policy.lm_calls))
    if bypassed:
        raise PolicyError(
            f"the frontend's own sub-call runs rlm_query, so lm_calls.{bypassed[0]} "
            "could not bind; remove it from the policy",
            [f"lm_calls.{name}: not enforceable with a frontend sub-call"
             for name in bypassed])


class Runtime:
    """Creates sessions under one policy; one audit log per runtime.

    Args:
        policy: a preset name (``"strict"``, ``"default"``, ``"dev"``), a path to a YAML
            policy file, or a ``Policy``.
        lm: the LM provider behind ``llm_query`` (default: none; a call then fails in the
            cell with ``HostCallError`` naming what to configure, and nothing leaves the
            machine unless you say so).
        audit: an open audit log, or ``audit_dir`` to open one (default
            :func:`default_audit_dir`).
        pool_size: sandboxes kept warm per backend and spec (0 disables the pool).
        tenant: recorded on every event.
        rlm_lm: the root model of the child RLMs that ``rlm_query`` starts (default:
            ``lm``).
        session_gate: admits or refuses each session before its sandbox starts,
            ``rlm_query`` children included (the daemon's session caps); default: all.
        subcall: a frontend's own recursive call, ``subcall(prompt, model) -> text``, run
            by ``rlm_query`` in place of rlmbox's child sessions (rlms' ``subcall_fn``);
            the policy and the ledger still decide every call.
        durability: ``"cell"`` (default) makes a cell's events durable (fsynced) before
            ``exec`` returns (and ``session.create`` before ``session()`` returns);
            ``"session"`` syncs at session end and in the background every few
            milliseconds, trading a crash window of a few ms of events for speed. Either
            way a failed write stops host calls (fail closed).
        metrics: a ``prometheus_client.CollectorRegistry`` to publish this runtime's
            metrics on (docs/observability.md; extra ``metrics``); default: none.
        tracing: an OpenTelemetry ``TracerProvider``: a span per session, cell and host
            call, one trace per session tree (extra ``otel``); default: no spans.
        observers: more observers of the audit stream (``runtime/observe.py``), such as
            the CLI's live display.
    """

    def __init__(self, policy: str | Path | Policy = "default", *,
                 lm: LMProvider | None = None, audit: AuditSink | None = None,
                 audit_dir: str | Path | None = None, pool_size: int = DEFAULT_POOL_SIZE,
                 tenant: str | None = None,
                 durability: Literal["cell", "session"] = "cell",
                 rlm_lm: LMProvider | None = None,
                 session_gate: SessionGate | None = None,
                 subcall: Subcall | None = None,
                 metrics: CollectorRegistry | None = None,
                 tracing: TracerProvider | None = None,
                 observers: Sequence[Observer] = ()) -> None:
        if durability not in ("cell", "session"):
            raise ValueError("durability must be 'cell' or 'session'")
        self.durability = durability
        self.policy = load_policy(policy)
        self.lm: LMProvider = lm if lm is not None else UnconfiguredLM(
            "pass lm= to Runtime(lm=...), or --lm SPEC on the command line")
        self.rlm_lm: LMProvider = rlm_lm if rlm_lm is not None else self.lm
        self._subcall = subcall
        if subcall is not None:
            _refuse_unbindable_lm_calls(self.policy)
        self._owns_audit = audit is None
        self.audit: AuditSink = audit if audit is not None else AuditLog(
            Path(audit_dir) if audit_dir is not None else default_audit_dir())
        register_secrets(self.audit, self.lm, self.rlm_lm)   # provider keys: never audited
        self.tenant = tenant
        self._gate: SessionGate = session_gate if session_gate is not None else OpenGate()
        self._supply = SandboxSupply(self.policy.isolation.runtime, pool_size)
        self._events = observed(self.audit, [*self._observers(metrics, tracing, pool_size),
                                             *observers])
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._state = RuntimeState.OPEN
        self._engine = PolicyEngine(self.policy)   # compiled once, shared (it is stateless)
        self._contexts = private_contexts_dir()   # made private once, not per session
        self._spec: SandboxSpec | None = None   # see _sandbox_spec
        # per backend, the properties (the backend's own object) that last met the policy:
        # the same frozenset meets the same fixed policy again, so the check is not redone
        # (run cold at each warm start, it cost ~0.1 ms); a probe's new report is checked
        self._proven: dict[str, frozenset[IsolationProperty]] = {}
        # session.create's limits and property names, made once rather than at each start
        self._limits_record = self.policy.limits.model_dump()
        # per properties report, its names as session.create lists them (made once each:
        # one dict lookup, so sessions starting at once on two backends never swap them)
        self._names: dict[frozenset[IsolationProperty], tuple[str, ...]] = {}
        self._events.append("policy.load", tenant=tenant, policy=self.policy.name,
                            policy_sha256=self.policy.sha256, mode=self.policy.mode)
        self._events.sync()

    def _observers(self, metrics: CollectorRegistry | None, tracing: TracerProvider | None,
                   pool_size: int) -> list[Observer]:
        """The observers asked for; their packages are imported only then."""
        observers: list[Observer] = []
        if metrics is not None:
            from rlmbox.observe.metrics import RuntimeMetrics  # noqa: PLC0415 - extra
            observers.append(RuntimeMetrics(metrics, pooled=pool_size > 0,
                                            census=self._supply))
        if tracing is not None:
            from rlmbox.observe.traces import SpanTree  # noqa: PLC0415 - extra
            observers.append(SpanTree(tracing))
        return observers

    @property
    def audit_path(self) -> Path | None:
        path = getattr(self.audit, "path", None)
        return path if isinstance(path, Path) else None

    # --- backends and pools --------------------------------------------------------------

    def backend(self, name: str) -> Backend:
        return self._supply.backend(name)

    def warm_up(self, backend: str | None = None, timeout: float = 60.0) -> bool:
        """Fills the warm pool for the policy's spec; True when full."""
        return self._supply.warm_up(backend or self.policy.isolation.backend,
                                    self._sandbox_spec(), timeout)

    def pool(self, backend: str | None = None) -> WarmPool | None:
        """The warm pool for the policy's spec on ``backend``, once ``warm_up`` or a
        session started it (benchmarks and tests wait on it to refill)."""
        return self._supply.pool(backend or self.policy.isolation.backend,
                                 self._sandbox_spec())

    def _sandbox_spec(self) -> SandboxSpec:
        """The spec of this runtime's sandboxes. Without packages it depends on the policy
        and tenant alone, so it is made once: made at each start it cost a warm start about
        0.1-0.2 ms (its code runs cold there). A policy with packages makes it at each start,
        which checks that the environment is still built (refused first otherwise)."""
        if self._spec is not None:
            return self._spec
        spec = spec_for(self.policy, self.tenant)
        if not self.policy.environment.packages:
            self._spec = spec
        return spec

    # --- sessions ------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._state is RuntimeState.CLOSED

    def session(self, context: Any = None, *, tools: Mapping[str, Callable[..., Any]] | None
                = None, backend: str | None = None, parent: Session | None = None,
                lm: LMProvider | None = None, subcall: Subcall | None = None,
                prepare: Sequence[str] = ()) -> Session:
        """Starts a session: checks isolation (fail closed), stages the context, inits
        the agent. The caller must ``close`` it (or use ``with``).

        ``lm`` and ``subcall`` stand in for the runtime's own for this session's
        ``llm_query`` and ``rlm_query`` (a runtime shared by many frontend environments,
        each with its own LM handler); ``rlm_query`` children without a ``subcall`` use
        the runtime's.

        ``prepare`` names the source of cells the caller will run first (an adapter's setup
        cell): the sandbox compiles them while the session's start is recorded, and a cell
        with exactly that source runs the compiled code. Nothing runs before its cell, which
        is decided and audited as any other.
        """
        if self._state is RuntimeState.CLOSED:
            raise SessionClosed("the runtime is closed")
        self._admit_providers(lm, subcall)
        backend_name = backend or self.policy.isolation.backend
        spec = self._sandbox_spec()   # an unbuilt package environment: refused first
        chosen = self.backend(backend_name)
        provided = chosen.properties()
        session_id = "s-" + secrets.token_hex(8)
        depth = parent.depth + 1 if parent else 0
        scope = EventScope(self._events, session_id, parent.id if parent else None, depth,
                           self.tenant)
        if self._proven.get(backend_name) is not provided:
            try:
                self._engine.check_isolation(
                    backend_name, provided,
                    chosen.remedy(self._engine.missing_isolation(provided)))
            except IsolationUnavailable:
                scope.event("session.refused", backend=backend_name,
                            missing=sorted(self._engine.missing_isolation(provided)),
                            policy_sha256=self.policy.sha256)
                self._events.sync()
                raise
            self._proven[backend_name] = provided
        self._gate.enter(session_id, parent.id if parent is not None else None)
        try:
            # one ledger per session tree: a root session opens one, descendants share it
            ledger = parent.ledger if parent is not None else Ledger(self.policy.budgets)
            functions = self._functions(tools or {}, lm or self.lm, subcall or self._subcall)
            store = self._gated_store(context, session_id)
            if store is not None:
                functions.update({f.name: f for f in context_functions(store)})
            transform = self._code_transform()
            # a child's sandbox start counts against its tenant's cells, as a root's does
            with (self._gate.child_work(parent.id) if parent is not None
                  else contextlib.nullcontext()):
                sandbox, warm = self._supply.acquire(backend_name, spec)
        except BaseException:
            self._gate.leave(session_id)
            raise
        try:
            config = agent_config(self.policy, sandbox, functions, tools or {}, prepare)
            if store is not None:
                config["context"] = {"kind": "gated"}
            elif context is not None:
                config["context"] = stage_context(sandbox, context, self._contexts,
                                                  memory_mb=self.policy.limits.memory_mb)
            init_id = send_init(sandbox, config, scope)   # runs while the start is recorded
            session = Session(
                scope=scope, sandbox=sandbox, policy=self.policy,
                dispatcher=CallDispatcher(
                    functions=functions, engine=self._engine, ledger=ledger, scope=scope,
                    tool_timeout_s=self.policy.limits.tool_timeout_s),
                transform=transform, durable_cells=self.durability == "cell",
                on_close=lambda closed: self._forget(closed, store),
                cell_slot=(None if parent is None
                           else functools.partial(self._gate.child_work, parent.id)))
            self._record_start(scope, sandbox, warm, sorted(functions))
            await_init(sandbox, init_id, scope)
        except BaseException:
            sandbox.kill()
            self._gate.leave(session_id)
            if store is not None:
                store.close()
            raise
        with self._lock:
            self._sessions[session_id] = session
        return session

    def _record_start(self, scope: EventScope, sandbox: Sandbox, warm: bool,
                      functions: list[str]) -> None:
        """Audits ``session.create``, durable (cell durability) before ``session()``
        returns. It runs while the sandbox works on ``init``; ``session.ready``, the
        agent's own report, becomes durable with the session's next sync: before a cell's
        result, a host call or a file transfer reaches the caller, or at close."""
        info = sandbox.info
        provided = sandbox.properties
        names = self._names.get(provided)
        if names is None:
            names = self._names[provided] = tuple(sorted(str(p) for p in provided))
        scope.event(
            "session.create", policy=self.policy.name, policy_sha256=self.policy.sha256,
            sandbox={"backend": info.backend, "runtime": info.runtime,
                     "image": info.image, "id": info.sandbox_id, "warm": warm,
                     "transport": info.transport},
            properties=list(names), limits=dict(self._limits_record),
            context_mode=self.policy.context.mode, code_mode=self.policy.code.mode,
            functions=functions)
        if self.durability == "cell":
            self._events.sync()

    def _admit_providers(self, lm: LMProvider | None, subcall: Subcall | None) -> None:
        """A session's own LM and sub-call meet the checks the runtime's met."""
        if subcall is not None:
            _refuse_unbindable_lm_calls(self.policy)
        if lm is not None:
            register_secrets(self.audit, lm)   # its keys: never audited

    def _functions(self, tools: Mapping[str, Callable[..., Any]], lm: LMProvider,
                   subcall: Subcall | None) -> dict[str, HostFunction]:
        recursive = (frontend_rlm_functions(subcall) if subcall is not None
                     else rlm_functions(self._child_session, self._find_session, self.rlm_lm))
        functions = {f.name: f for f in (llm_query(lm), llm_query_batched(lm), *recursive)}
        for name, fn in tools.items():
            host_fn = tool(name, fn)
            functions[host_fn.name] = host_fn
        return functions

    def _code_transform(self) -> Callable[[str], types.CodeType] | None:
        if self.policy.code.mode != "restricted":
            return None
        from rlmbox.policies.codegate import transform  # noqa: PLC0415 - optional layer
        allowed = frozenset(self.policy.code.allowed_imports)
        return lambda code: transform(code, allowed)

    def _child_session(self, context: Any, *, parent: Session) -> Session:
        return self.session(context=context, parent=parent,
                            backend=parent.sandbox.info.backend)

    def _find_session(self, session_id: str) -> Session | None:
        with self._lock:
            return self._sessions.get(session_id)

    def _forget(self, session: Session, store: ContextStore | None) -> None:
        self._gate.leave(session.id)
        if store is not None:
            store.close()
        with self._lock:
            self._sessions.pop(session.id, None)

    def _gated_store(self, context: Any, session_id: str) -> ContextStore | None:
        """In gated mode the context stays on the host; reads become decided host calls."""
        if self.policy.context.mode != "gated" or context is None:
            return None

        def violation(quota: str, message: str) -> None:
            self._events.append("limit.exceeded", session=session_id, tenant=self.tenant,
                              limit=quota, reason=message)

        return ContextStore(context, self._contexts / session_id,
                            self.policy.context, enforce=self.policy.mode == "enforce",
                            on_violation=violation,
                            limits=self._sandbox_spec().limits)

    # --- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Closes every open session and pool, then the audit log. Idempotent."""
        if self._state is RuntimeState.CLOSED:
            return
        self._state = RuntimeState.CLOSED
        with self._lock:
            sessions = list(self._sessions.values())
        for session in sessions:
            session.close("runtime closed")
        self._supply.close()
        if self._owns_audit:
            self.audit.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
