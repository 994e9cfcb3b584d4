"""``RlmboxREPL``: an rlms ``BaseEnv`` whose cells run in an rlmbox sandbox under a policy.

It does what rlms asks of an environment (``SupportsPersistence`` for multi-turn mode,
``subcall_fn`` for ``rlm_query``, custom tools, ``REPLResult`` as ``LocalREPL`` fills it),
with every call out of the sandbox a host call that the policy decides and the audit log
records.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from rlm.core.types import REPLResult, RLMChatCompletion
from rlm.environments.base_env import (
    NonIsolatedEnv,
    extract_tool_value,
    validate_custom_tools,
)

from rlmbox.adapters._cells import error_line
from rlmbox.adapters._values import (
    INLINE_LIMIT,
    LOADER_SETUP,
    inline_source,
    json_text,
    value_source,
)
from rlmbox.adapters.rlms_handler import RlmsHandlerLM
from rlmbox.adapters.rlms_locals import (
    SNAPSHOT_CELL,
    SNAPSHOT_SETUP,
    CellReport,
    decode_report,
)
from rlmbox.errors import SessionClosed, SessionError
from rlmbox.policies.model import Policy
from rlmbox.runtime.contract import RuntimeFactory, RuntimeLike, SessionLike, is_ready
from rlmbox.runtime.events import AuditSink
from rlmbox.runtime.runtime import Runtime
from rlmbox.runtime.shared import shared_runtime

SubcallFn = Callable[[str, "str | None"], RLMChatCompletion]


class RlmboxREPL(NonIsolatedEnv):  # type: ignore[misc]  # rlm ships no type information
    """An rlms environment whose cells run in an rlmbox sandbox under a policy.

    Takes the keyword arguments rlms passes every environment (``lm_handler_address``,
    ``context_payload``, ``depth``, ``subcall_fn``, ``custom_tools``,
    ``max_concurrent_subcalls``, ...) plus rlmbox's own:

    Args:
        policy: rlmbox policy (preset name, path or ``Policy``).
        audit: an open audit sink to share (e.g. one ``AuditLog`` for many environments),
            else ``audit_dir`` (default: rlmbox's default audit directory).
        backend: sandbox backend (default: the policy's).
        pool_size: warm sandboxes to keep. With a pool the environment borrows the
            process's shared runtime for its policy, audit sink, tenant and pool size
            (``rlmbox.runtime.shared``), so the next completion's environment starts warm;
            each still gets a fresh sandbox, its own ledger and its own audit records, and
            an audit log opened from ``audit_dir`` stays open until
            ``close_shared_runtimes()`` or exit. Without one (the default) it makes a
            runtime of its own, closed by ``cleanup``.
        locals_summary: after each cell, run the report cell (audited like any other) that
            fills ``REPLResult.locals`` and tells a newly set ``answer`` from a stale one;
            ``False`` saves that round trip (``locals`` stays empty and a ready ``answer``
            is reported by every cell).
        runtime_factory: makes the runtime the REPL runs on from its LM provider and its
            sub-call, in place of ``Runtime(policy, ...)``: say
            ``functools.partial(RayRuntime, policy, address=...)`` to run the REPL on a
            Ray cluster (``policy``, ``audit``, ``audit_dir``, ``pool_size`` and ``tenant``
            are then the factory's business and unused here).
    """

    def __init__(self, lm_handler_address: tuple[str, int] | None = None,
                 context_payload: dict[str, Any] | list[Any] | str | None = None,
                 setup_code: str | None = None, persistent: bool = False, depth: int = 1,
                 subcall_fn: SubcallFn | None = None,
                 custom_tools: Mapping[str, Any] | None = None,
                 max_concurrent_subcalls: int = 4, *,
                 policy: str | Path | Policy = "default", audit: AuditSink | None = None,
                 audit_dir: str | Path | None = None, backend: str | None = None,
                 pool_size: int = 0, tenant: str | None = None, locals_summary: bool = True,
                 runtime_factory: RuntimeFactory | None = None, **kwargs: Any) -> None:
        kwargs.pop("custom_sub_tools", None)   # rlms hands these to the child RLMs it makes
        kwargs.pop("compaction", None)
        super().__init__(persistent=persistent, depth=depth,
                         max_concurrent_subcalls=max_concurrent_subcalls, **kwargs)
        if max_concurrent_subcalls < 1:
            raise ValueError("max_concurrent_subcalls must be at least 1")
        self.custom_tools = dict(custom_tools or {})
        validate_custom_tools(self.custom_tools)
        self.lm_handler_address = lm_handler_address
        self.subcall_fn = subcall_fn
        self.lm = RlmsHandlerLM(lm_handler_address, depth=depth)
        self._tools, self._data = _split_tools(self.custom_tools)
        self._subcall_slots = threading.BoundedSemaphore(max_concurrent_subcalls)
        self._locals_summary = locals_summary
        self._backend = backend
        self._locals: dict[str, Any] = {}
        self._context_count = 0
        self._history_count = 0
        self._shared = shared_runtime(policy, audit=audit, audit_dir=audit_dir, tenant=tenant,
                                      pool_size=pool_size) \
            if runtime_factory is None and pool_size > 0 else None
        self.runtime: RuntimeLike = (
            runtime_factory(lm=self.lm, subcall=self._subcall) if runtime_factory is not None
            else self._shared if self._shared is not None
            else Runtime(policy, lm=self.lm, audit=audit, audit_dir=audit_dir, pool_size=0,
                         tenant=tenant, subcall=self._subcall))
        self.session: SessionLike | None = None
        self._context: Any = context_payload
        try:
            self.setup()
            if setup_code:
                self.execute_code(setup_code)
        except BaseException:
            self.cleanup()
            raise

    # --- BaseEnv -------------------------------------------------------------------------

    def setup(self) -> None:
        """Starts the session: stages the context, defines ``answer`` and data tools.

        When every data value is small enough to go inline, the setup cell is known before
        the session starts, so the sandbox compiles it while the start is recorded."""
        if self.session is not None:
            self.session.close("replaced")
        texts = {name: json_text(value) for name, value in self._data.items()}
        known = (self._setup_cell({name: inline_source(text) for name, text in texts.items()})
                 if all(len(text) <= INLINE_LIMIT for text in texts.values()) else None)
        self.session = self._start_session(() if known is None else (known,))
        self._context_count = 0 if self._context is None else 1
        self._history_count = 0
        self._run_setup_cell(known if known is not None else self._setup_cell(
            {name: self._source(name, text) for name, text in texts.items()}))

    def _setup_cell(self, data_sources: Mapping[str, str]) -> str:
        """The setup cell's source: ``answer``, the loader, the context and the data tools
        (each value as the expression that rebuilds it), then the locals report."""
        lines = [SNAPSHOT_SETUP, LOADER_SETUP]
        if self._context is not None:
            lines.append("context_0 = context")
        lines.extend(f"{name} = {source}" for name, source in data_sources.items())
        return self._with_report("\n".join(lines))

    def load_context(self, context_payload: dict[str, Any] | list[Any] | str) -> None:
        """Replaces the context. The first context is staged when a session starts, so this
        starts a fresh session (the namespace is reset), unlike ``LocalREPL``."""
        self._context = context_payload
        self.setup()

    def execute_code(self, code: str) -> REPLResult:
        """Runs one cell in the sandbox and reports it as rlms' ``LocalREPL`` would.

        A cell error is appended to stderr as ``"\\n<Type>: <message>"``; a killed sandbox
        reports its reason the same way for that cell, and every later call raises
        ``SessionKilled`` (the namespace is gone, so the completion must stop).
        """
        session = self._live_session()
        started = time.perf_counter()
        self.lm.drain()
        result = session.exec(code)
        stderr = result.stderr
        if result.error:
            stderr += f"\n{error_line(result.error)}"
        report = self._refresh_locals()
        final = None
        if report is None:
            if result.has_answer:
                final = result.answer if isinstance(result.answer, str) else str(result.answer)
        elif report.answered is not None:
            final = report.answered
        elif result.has_answer and not report.still_ready:   # FINAL(x), rlmbox's own form
            final = result.answer if isinstance(result.answer, str) else str(result.answer)
        return REPLResult(stdout=result.stdout, stderr=stderr, locals=dict(self._locals),
                          execution_time=time.perf_counter() - started,
                          rlm_calls=self.lm.drain(), final_answer=final)

    def cleanup(self) -> None:
        """Ends the session and the runtime (an audit log it opened is closed); ``locals``
        is emptied, as ``LocalREPL`` clears its namespace."""
        self._locals = {}
        if self.session is not None:
            self.session.close()
            self.session = None
        if self._shared is None:
            self.runtime.close()

    def __enter__(self) -> RlmboxREPL:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    @property
    def audit(self) -> AuditSink | None:
        """The embedded runtime's audit log (a child RLM shares it); None on a cluster,
        whose logs are the nodes' own."""
        return self.runtime.audit if isinstance(self.runtime, Runtime) else None

    @property
    def locals(self) -> Mapping[str, Any]:
        """A read-only copy of the sandbox's variables as of the last cell (JSON values;
        a ``SandboxValue`` for what stayed inside)."""
        return MappingProxyType(self._locals)

    # --- SupportsPersistence (rlms' multi-turn mode) -------------------------------------

    def update_handler_address(self, address: tuple[str, int]) -> None:
        """Points ``llm_query`` at another ``LMHandler`` (a new completion's)."""
        self.lm_handler_address = address
        self.lm.address = address

    def add_context(self, context_payload: dict[str, Any] | list[Any] | str,
                    context_index: int | None = None) -> int:
        """Defines ``context_<N>`` in the sandbox (``context`` stays ``context_0``)."""
        index = self._context_count if context_index is None else context_index
        if index == 0 or self._context_count == 0:
            if index != 0:
                raise SessionError("the first context must be context_0")
            self.load_context(context_payload)
            return 0
        name = f"context_{index}"
        text, kind = ((context_payload, "text") if isinstance(context_payload, str)
                      else (json_text(context_payload), "json"))
        self._run_setup(f"{name} = {self._source(name, text, kind=kind)}")
        self._context_count = max(self._context_count, index + 1)
        return index

    def get_context_count(self) -> int:
        return self._context_count

    def add_history(self, message_history: list[dict[str, Any]],
                    history_index: int | None = None) -> int:
        """Defines ``history_<N>`` (a copy; ``history`` is ``history_0``) in the sandbox."""
        index = self._history_count if history_index is None else history_index
        name = f"history_{index}"
        lines = [f"{name} = {self._source(name, json_text(copy.deepcopy(message_history)))}"]
        if index == 0:
            lines.append(f"history = {name}")
        self._run_setup("\n".join(lines))
        self._history_count = max(self._history_count, index + 1)
        return index

    def get_history_count(self) -> int:
        return self._history_count

    # --- internals -----------------------------------------------------------------------

    def _subcall(self, prompt: str, model: str | None) -> str:
        """``rlm_query`` once the policy admitted it: rlms' ``subcall_fn`` (at most
        ``max_concurrent_subcalls`` at a time), else a plain ``llm_query`` as in rlms;
        a failing sub-call is the text rlms' REPL shows."""
        if self.subcall_fn is None:
            return self.lm.complete(prompt, model=model).text
        with self._subcall_slots:
            try:
                completion = self.subcall_fn(prompt, model)
            except Exception as exc:   # rlms shows the model the failure as text
                return f"Error: RLM query failed - {exc}"
        self.lm.record(completion)
        return str(completion.response)

    def _start_session(self, prepare: Sequence[str] = ()) -> SessionLike:
        """A shared runtime serves many REPLs, so this one's LM and sub-call go with the
        session; a runtime of its own was made with them. An embedded runtime compiles
        ``prepare`` ahead (a cluster's sessions compile each cell as it comes)."""
        if self._shared is not None:
            return self._shared.session(context=self._context, tools=self._tools,
                                        backend=self._backend, lm=self.lm,
                                        subcall=self._subcall, prepare=prepare)
        if isinstance(self.runtime, Runtime):
            return self.runtime.session(context=self._context, tools=self._tools,
                                        backend=self._backend, prepare=prepare)
        return self.runtime.session(context=self._context, tools=self._tools,
                                    backend=self._backend)

    def _live_session(self) -> SessionLike:
        if self.session is None:
            raise SessionClosed("the rlms environment was cleaned up")
        return self.session

    def _source(self, name: str, text: str, *, kind: str = "json") -> str:
        return value_source(self._live_session(), self.audit, name, text, kind=kind,
                            event="rlms.value")

    def _with_report(self, code: str) -> str:
        """A setup cell ends with the locals report, when there is one: one round trip and
        one durable cell, not two."""
        return f"{code}\n{SNAPSHOT_CELL}" if self._locals_summary else code

    def _run_setup(self, code: str) -> None:
        self._run_setup_cell(self._with_report(code))

    def _run_setup_cell(self, cell: str) -> None:
        """Runs a setup cell (its report included, by :meth:`_with_report`)."""
        result = self._live_session().exec(cell)
        if not result.ok:
            raise SessionError(f"the rlms environment's setup cell failed: {result.error}")
        if self._locals_summary:
            self._locals = decode_report(result.answer).variables

    def _refresh_locals(self) -> CellReport | None:
        session = self.session
        if not self._locals_summary or session is None or not is_ready(session):
            return None
        report = decode_report(session.exec(SNAPSHOT_CELL).answer)
        self._locals = report.variables
        return report


def _split_tools(custom_tools: Mapping[str, Any]) -> tuple[dict[str, Callable[..., Any]],
                                                           dict[str, Any]]:
    """Callables become host tools (policy-gated, run on the host); other values are data
    copied into the sandbox, so they must be JSON."""
    tools: dict[str, Callable[..., Any]] = {}
    data: dict[str, Any] = {}
    for name, entry in custom_tools.items():
        value = extract_tool_value(entry)
        if callable(value):
            tools[name] = value
            continue
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"custom tool {name!r}: a data value must be JSON to enter the "
                            f"sandbox ({exc})") from exc
        data[name] = value
    return tools, data
