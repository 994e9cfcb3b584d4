"""DSPy: an rlmbox-backed ``CodeInterpreter`` for ``dspy.RLM`` (and any module that takes one).

    from rlmbox.adapters.dspy import RlmboxInterpreterFactory
    with RlmboxInterpreterFactory(policy="my-policy.yaml") as sandbox:
        rlm = dspy.RLM("context, query -> answer", interpreter_factory=sandbox)
        rlm(context=long_text, query="...")

DSPy asks for a zero-argument factory; each forward pass gets a fresh
:class:`RlmboxInterpreter`, i.e. a fresh rlmbox session. ``llm_query`` and
``llm_query_batched`` inside the sandbox are rlmbox's own host functions (decided by the
policy, budgeted by the ledger, recorded with their completions in the audit log) whose LM is
the ``llm_query`` tool DSPy registers, so DSPy's sub-LM and its ``max_llm_calls`` still apply.
Every other tool DSPy registers (yours, and the ``dspy`` facade's) is an rlmbox tool
``tool.<name>``: it runs on the host only if the policy permits it.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import json
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, cast

from dspy.primitives.code_interpreter import (
    CodeExecutionError,
    CodeInterpreterError,
    FinalOutput,
)
from dspy.utils.callback import BaseCallback
from dspy.utils.callback import with_callbacks as dspy_with_callbacks
from pydantic_core import PydanticSerializationError, to_jsonable_python

from rlmbox.adapters._cells import error_line, is_compile_error
from rlmbox.adapters._values import LOADER_SETUP, digest_of, value_source
from rlmbox.adapters.dspy_names import (
    check_tool_names,
    invalid_variable_names,
    output_field_names,
)
from rlmbox.adapters.dspy_sets import with_sets_sorted
from rlmbox.adapters.dspy_tool_results import awaited, crossing_value
from rlmbox.adapters.trailing_value import SETUP as TRAILING_VALUE_SETUP
from rlmbox.adapters.trailing_value import trailing_value, with_trailing_value
from rlmbox.audit.log import AuditLog
from rlmbox.errors import LMError, RlmboxError, ToolError
from rlmbox.lm.base import Completion, estimate_tokens
from rlmbox.policies.model import Policy
from rlmbox.runtime.contract import RuntimeFactory, RuntimeLike, SessionLike
from rlmbox.runtime.events import AuditSink
from rlmbox.runtime.results import ExecResult
from rlmbox.runtime.runtime import Runtime, default_audit_dir

LM_TOOLS = frozenset({"llm_query", "llm_query_batched"})
EXECUTION_INSTRUCTIONS = (
    "Code runs in an rlmbox sandbox: CPython with the standard library, no network and no "
    "host files. llm_query, llm_query_batched and the tools are host calls that a policy may "
    "refuse (PolicyDenied) or cut off at a budget (BudgetExceeded). SUBMIT(...) ends the run.")
_SETUP = '''
class _RlmboxSubmit(BaseException):
    """Ends the cell once SUBMIT has recorded the outputs (not an Exception: not caught)."""
_rlmbox_vars = {}
''' + LOADER_SETUP + TRAILING_VALUE_SETUP
_SUBMIT = '''
def _rlmbox_submit(*args, **kwargs):
    names = {names}
    if names is None:
        if len(args) != 1 or kwargs:
            raise TypeError("SUBMIT requires one output value")
        FINAL({{"output": args[0]}})
    else:
        if args and kwargs:
            raise TypeError("SUBMIT accepts positional or keyword values, not both")
        values = dict(zip(names, args)) if args else dict(kwargs)
        if set(values) != set(names) or len(args) > len(names):
            raise TypeError("SUBMIT fields do not match the configured output fields")
        FINAL(values)
    raise _RlmboxSubmit()
'''
# before every cell, as DSPy restores the names it owns: a cell may have replaced SUBMIT
_BIND_SUBMIT = "SUBMIT = _rlmbox_submit\n"
_Method = TypeVar("_Method", bound=Callable[..., Any])


def with_callbacks(method: _Method) -> _Method:
    """DSPy's callback decorator (``on_interpreter_*`` hooks), typed: dspy ships no types."""
    return cast(_Method, dspy_with_callbacks(method))


class ActiveExecution(CodeInterpreterError, ToolError):  # type: ignore[misc]  # dspy: untyped
    """``execute`` was called while the interpreter runs a cell: from one of its own tools
    (which would wait for itself) or from another thread. A ``ToolError`` too, so a tool
    that hits it shows the model this message rather than only the type's name."""


class _ToolLM:
    """The LM behind rlmbox's ``llm_query``: DSPy's own ``llm_query`` tool, in the
    caller's context (DSPy keeps its LM settings in context variables, and batched items
    run on rlmbox's worker threads)."""

    name = "dspy"
    model = "dspy"   # DSPy's own llm_query picks its LM; rlmbox cannot name another

    def __init__(self, interpreter: RlmboxInterpreter) -> None:
        self._interpreter = interpreter

    def complete(self, prompt: str, *, model: str | None = None) -> Completion:
        query = self._interpreter.tools.get("llm_query")
        if query is None:
            raise LMError("no llm_query tool is registered (dspy.RLM registers one)")
        try:
            text = self._interpreter.context.copy().run(query, prompt)
        except Exception as exc:   # DSPy's budget and LM errors: the model should read them
            raise LMError(f"{type(exc).__name__}: {exc}") from exc
        text = str(text)
        return Completion(text=text, model=model or "dspy",
                          input_tokens=estimate_tokens(prompt), output_tokens=estimate_tokens(text))


class RlmboxInterpreter:
    """A DSPy ``CodeInterpreter`` whose state lives in one rlmbox session.

    The session starts at the first ``execute`` (``start`` opens the runtime), because DSPy
    registers its tools after creating the interpreter; a tool added to ``tools`` later is
    registered on the running session before the next cell. Tools are looked up by name
    at call time, so replacing a tool's function is fine. Tool and output-field names are
    checked as DSPy's interpreters check them (``ValueError``), when built and at every
    ``execute``; ``callbacks`` get DSPy's ``on_interpreter_*`` hooks.

    ``runtime_factory`` makes the runtime in place of ``Runtime(policy, ...)`` (then
    ``policy``, ``audit``, ``audit_dir``, ``pool_size`` and ``tenant`` are unused): with
    ``functools.partial(RayRuntime, policy, address=...)`` the session runs on a Ray
    cluster node while the tools and DSPy's LM run here.
    """

    execution_instructions = EXECUTION_INSTRUCTIONS

    def __init__(self, tools: Mapping[str, Callable[..., Any]] | None = None,
                 output_fields: list[dict[str, Any]] | None = None, *,
                 policy: str | Path | Policy = "default", audit: AuditSink | None = None,
                 audit_dir: str | Path | None = None, backend: str | None = None,
                 pool_size: int = 0, tenant: str | None = None,
                 callbacks: list[BaseCallback] | None = None,
                 execution_timeout: float | None = None,
                 runtime_factory: RuntimeFactory | None = None) -> None:
        if execution_timeout is not None and execution_timeout <= 0:
            raise ValueError("execution_timeout must be positive or None")
        check_tool_names(tools or {})
        fields = None if output_fields is None else [dict(field) for field in output_fields]
        output_field_names(fields)
        self.tools: dict[str, Callable[..., Any]] = dict(tools or {})
        self.output_fields = fields
        self.callbacks = list(callbacks or [])
        self.execution_timeout = execution_timeout
        self._executing = threading.Lock()
        self.context = contextvars.copy_context()
        self._options: dict[str, Any] = {"audit": audit, "audit_dir": audit_dir,
                                         "pool_size": pool_size, "tenant": tenant}
        self._policy = policy
        self._backend = backend
        self._runtime_factory = runtime_factory
        self._runtime: RuntimeLike | None = None
        self._session: SessionLike | None = None
        self._tool_names: frozenset[str] = frozenset()
        self._injected: dict[str, str] = {}
        self._submit_defined = ""
        self._shut = False

    # --- CodeInterpreter ------------------------------------------------------------------

    @with_callbacks
    def start(self) -> None:
        """Opens the runtime (policy, backend, audit). Idempotent until ``shutdown``."""
        if self._shut:
            raise CodeInterpreterError("this interpreter was shut down; create a new one")
        if self._runtime is None:
            try:
                self._runtime = self._runtime_factory(lm=_ToolLM(self)) \
                    if self._runtime_factory is not None else \
                    Runtime(self._policy, lm=_ToolLM(self), **self._options)
            except RlmboxError as exc:
                raise CodeInterpreterError(f"rlmbox could not start: {exc}") from exc

    def _started_runtime(self) -> RuntimeLike:
        """The runtime, opened now if need be (``start`` raises when it cannot; its callbacks
        run only when it does start it, as in DSPy's ``LocalInterpreter``)."""
        if self._runtime is None:
            self.start()
        if self._runtime is None:
            raise CodeInterpreterError("rlmbox could not start: no runtime")
        return self._runtime

    @with_callbacks
    def execute(self, code: str, variables: dict[str, Any] | None = None) -> Any:
        """Runs ``code`` after binding ``variables``; returns ``FinalOutput`` after
        ``SUBMIT``, else the value of a final bare expression (JSON, else its ``repr``),
        else the cell's output (or None), as DSPy's interpreters do.

        Raises:
            SyntaxError: the code does not compile.
            CodeExecutionError: the code raised (the message is ``Type: message``), or ran
                past its time limit (``execution_timeout``, or the policy's) and was
                interrupted (its variables are kept).
            CodeInterpreterError: rlmbox could not start, the sandbox died (terminal), a
                variable is refused, or a cell is already running (``ActiveExecution``).
            ValueError: a tool or output-field name is refused (DSPy's check).
        """
        if not self._executing.acquire(blocking=False):
            raise ActiveExecution("RlmboxInterpreter already has an active execution; a tool "
                                  "cannot call execute() on its own interpreter")
        try:
            return self._execute(code, variables)
        finally:
            self._executing.release()

    def _execute(self, code: str, variables: dict[str, Any] | None) -> Any:
        check_tool_names(self.tools)
        output_field_names(self.output_fields)
        values = self._variables_as_json(variables or {})
        self.context = contextvars.copy_context()
        session = self._ensure_session()
        # bound in the same cell: rlmbox restores its own names (``context``) after a cell
        prefix = self._submit_source() + self._bind(session, values)
        result = self._run(session, prefix + with_trailing_value(code), self._cell_timeout())
        if result.status == "killed":
            raise CodeInterpreterError(f"the sandbox was killed: {result.error}")
        if result.has_answer:
            is_value, value = trailing_value(result.answer)
            return value if is_value else FinalOutput(result.answer)
        if result.status == "error" and is_compile_error(result):
            self._submit_defined = ""   # nothing of the cell ran, SUBMIT's update neither
            raise SyntaxError(error_line(result.error or "").split(": ", 1)[-1])
        if result.status == "error":
            raise CodeExecutionError(error_line(result.error or ""))
        if result.status == "interrupted":
            raise CodeExecutionError("KeyboardInterrupt: the cell exceeded execution timeout "
                                     "(its time limit) and was interrupted; its variables "
                                     "are kept")
        output = (result.stdout + result.stderr).rstrip("\n")
        return output or None

    def __call__(self, code: str, variables: dict[str, Any] | None = None) -> Any:
        return self.execute(code, variables)

    @with_callbacks
    def shutdown(self) -> None:
        """Ends the session and the runtime. Idempotent; the interpreter cannot restart."""
        self._shut = True
        if self._session is not None:
            self._session.close()
            self._session = None
        if self._runtime is not None:
            self._runtime.close()
            self._runtime = None

    def __enter__(self) -> RlmboxInterpreter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.shutdown()

    # --- internals -------------------------------------------------------------------------

    def _ensure_session(self) -> SessionLike:
        if self._session is not None:
            added = sorted(set(self.tools) - LM_TOOLS - self._tool_names)
            if added:
                self._add_tools(self._session, added)
            return self._session
        runtime = self._started_runtime()
        names = frozenset(self.tools) - LM_TOOLS
        try:
            session = runtime.session(
                tools={name: self._late_bound(name) for name in sorted(names)},
                backend=self._backend)
        except RlmboxError as exc:
            raise CodeInterpreterError(f"rlmbox could not start a session: {exc}") from exc
        self._session, self._tool_names = session, names
        self._check(self._run(session, _SETUP), "setting up")
        return session

    def _add_tools(self, session: SessionLike, names: list[str]) -> None:
        """Tools DSPy put in ``tools`` after the session started (it fills the dict of a
        running interpreter): registered on the session, decided by the policy as the rest."""
        try:
            session.add_tools({name: self._late_bound(name) for name in names})
        except RlmboxError as exc:
            raise CodeInterpreterError(f"rlmbox could not add tools {names}: {exc}") from exc
        self._tool_names |= frozenset(names)

    @with_callbacks
    def invoke_tool(self, tool_name: str, kwargs: dict[str, Any]) -> Any:
        """Calls the tool registered as ``tool_name`` now, awaiting an ``async`` one."""
        if tool_name not in self.tools:
            raise CodeInterpreterError(f"Unknown tool: {tool_name}")
        return awaited(self.tools[tool_name](**kwargs))

    def _late_bound(self, name: str) -> Callable[..., Any]:
        """A host function with the tool's parameters that calls whatever ``tools[name]``
        is at call time, in the caller's DSPy context, and hands back a value that can
        cross into the sandbox."""
        target = self.tools[name]

        def call(**kwargs: Any) -> Any:
            result = self.context.copy().run(self.invoke_tool, name, kwargs)
            return crossing_value(name, result)

        functools.update_wrapper(call, target)
        call.__signature__ = inspect.signature(target)  # type: ignore[attr-defined]
        return call

    def _submit_source(self) -> str:
        """``SUBMIT`` as DSPy's ``LocalInterpreter`` defines it (one value without output
        fields, else the fields by position or by name, exactly; it ends the cell), for the
        output fields of this ``execute``: DSPy may change them on a running interpreter.
        Defined again only when they changed; bound to the name ``SUBMIT`` every cell."""
        source = _SUBMIT.format(names=repr(output_field_names(self.output_fields)))
        if source == self._submit_defined:
            return _BIND_SUBMIT
        self._submit_defined = source
        return source + _BIND_SUBMIT

    def _variables_as_json(self, variables: Mapping[str, Any]) -> dict[str, str]:
        """Each variable's JSON text, checked (names, then values) before anything starts,
        as DSPy's interpreters check them."""
        invalid = invalid_variable_names(variables, self.tools)
        if invalid:
            raise CodeInterpreterError(
                "variables must be non-reserved Python identifiers that name no tool; "
                f"invalid names: {invalid!r}")
        texts = {}
        for name, value in variables.items():
            try:
                texts[name] = json.dumps(to_jsonable_python(with_sets_sorted(value)))
            except (PydanticSerializationError, TypeError, ValueError) as exc:
                kind = type(value).__name__
                raise CodeInterpreterError(f"variable {name!r}: unsupported value type {kind}: "
                                           f"Unable to serialize {kind} as JSON") from exc
        return texts

    def _bind(self, session: SessionLike, texts: Mapping[str, str]) -> str:
        """Lines that bind each variable (its JSON text); a value is sent again only when
        it changed."""
        lines = []
        for name, text in texts.items():
            digest = digest_of(text)
            if self._injected.get(name) != digest:
                runtime = self._started_runtime()
                audit = runtime.audit if isinstance(runtime, Runtime) else None
                source = value_source(session, audit, name, text, event="dspy.variable")
                lines.append(f"_rlmbox_vars[{name!r}] = {source}")
                self._injected[name] = digest
            lines.append(f"{name} = _rlmbox_vars[{name!r}]")
        return "".join(line + "\n" for line in lines)

    def _cell_timeout(self) -> float | None:
        """``execution_timeout``, within the policy's cell time limit (which it can only
        shorten)."""
        if self.execution_timeout is None:
            return None
        return min(self.execution_timeout,
                   self._started_runtime().policy.limits.cell_timeout_s)

    def _run(self, session: SessionLike, code: str,
             timeout: float | None = None) -> ExecResult:
        try:
            return session.exec(code, timeout=timeout)
        except RlmboxError as exc:
            raise CodeInterpreterError(f"the rlmbox session cannot run code: {exc}") from exc

    @staticmethod
    def _check(result: ExecResult, doing: str) -> None:
        if not result.ok:
            raise CodeInterpreterError(f"rlmbox failed {doing}: {result.error}")


class RlmboxInterpreterFactory:
    """The zero-argument factory ``dspy.RLM(interpreter_factory=...)`` takes.

    Every interpreter it makes shares one audit log (``audit``, or one it opens in
    ``audit_dir`` and closes on ``close``), or, given ``runtime_factory``, runs on the
    runtime that makes (see :class:`RlmboxInterpreter`). ``execution_instructions`` tells
    the model where its code runs.
    """

    execution_instructions = EXECUTION_INSTRUCTIONS

    def __init__(self, policy: str | Path | Policy = "default", *,
                 audit: AuditSink | None = None, audit_dir: str | Path | None = None,
                 backend: str | None = None, tenant: str | None = None,
                 callbacks: list[BaseCallback] | None = None,
                 runtime_factory: RuntimeFactory | None = None) -> None:
        self.policy = policy
        self.runtime_factory = runtime_factory
        self.callbacks = list(callbacks or [])
        self.backend = backend
        self.tenant = tenant
        self._audit = audit
        self._audit_dir = audit_dir
        self._owned: AuditLog | None = None

    def __call__(self) -> RlmboxInterpreter:
        if self.runtime_factory is not None:
            return RlmboxInterpreter(backend=self.backend, callbacks=self.callbacks,
                                     runtime_factory=self.runtime_factory)
        return RlmboxInterpreter(policy=self.policy, audit=self._sink(), backend=self.backend,
                                 tenant=self.tenant, callbacks=self.callbacks)

    def _sink(self) -> AuditSink:
        if self._audit is not None:
            return self._audit
        if self._owned is None:
            self._owned = AuditLog(Path(self._audit_dir) if self._audit_dir is not None
                                   else default_audit_dir())
        return self._owned

    def close(self) -> None:
        """Closes the audit log this factory opened (not one it was given)."""
        if self._owned is not None:
            self._owned.close()
            self._owned = None

    def __enter__(self) -> RlmboxInterpreterFactory:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
