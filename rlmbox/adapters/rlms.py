"""rlms (PyPI ``rlms``, module ``rlm``): run the official RLM library's REPL in rlmbox.

rlms picks its environment from a closed list of names (``get_environment``) and has no
registry for custom ones, so there are two ways in, neither a fork:

- :class:`RlmboxRLM`, a subclass of ``rlm.RLM`` whose only change is where a completion's
  environment comes from: ``RlmboxRLM(backend=..., environment_kwargs={"policy": ...})``.
- :class:`RlmboxREPL`, a ``BaseEnv`` to drive directly, like rlms' own ``LocalREPL``.

Model code runs in an rlmbox session; ``llm_query`` from the sandbox is a host call that the
policy decides, the ledger budgets and the audit log records, and only then does
:class:`RlmsHandlerLM` forward it, from the host, to the RLM's own ``LMHandler`` socket. The
sandbox never learns the handler's address (its network is off anyway).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rlm import RLM
from rlm.clients import get_client
from rlm.core.comms_utils import LMRequest, send_lm_request
from rlm.core.lm_handler import LMHandler
from rlm.core.types import REPLResult, RLMChatCompletion
from rlm.environments.base_env import (
    NonIsolatedEnv,
    extract_tool_value,
    validate_custom_tools,
)

from rlmbox.adapters._cells import error_line, parse_show_vars, python_literal
from rlmbox.errors import SessionClosed, SessionError
from rlmbox.lm.base import Completion
from rlmbox.policies.model import Policy
from rlmbox.runtime.events import AuditSink
from rlmbox.runtime.runtime import Runtime
from rlmbox.runtime.session import Session, SessionState

ENVIRONMENT_NAME = "rlmbox"
# what rlms' format_execution_result lists as "REPL variables"
_LISTED_TYPES = frozenset({"str", "int", "float", "bool", "list", "dict", "tuple"})
_ANSWER_SETUP = 'answer = {"content": "", "ready": False}'


class RlmsHandlerLM:
    """An rlmbox LM provider that forwards to an rlms ``LMHandler`` over its socket.

    Mirrors ``LocalREPL._llm_query``: a handler error becomes the text ``"Error: ..."`` the
    model would see natively, not an exception. Each completion is kept (``drain``) so the
    environment can report it in ``REPLResult.rlm_calls``.
    """

    name = "rlms-handler"
    model = "rlms-handler-default"   # stands for the handler's own default model

    def __init__(self, address: tuple[str, int] | None = None, *, depth: int = 1,
                 timeout: int = 300) -> None:
        self.address = address
        self.depth = depth
        self.timeout = timeout
        self._lock = threading.Lock()
        self._calls: list[RLMChatCompletion] = []

    def complete(self, prompt: str, *, model: str | None = None) -> Completion:
        if self.address is None:
            return Completion(text="Error: No LM handler configured", model=model or "none")
        named = None if model == self.model else model   # the handler picks its default
        response = send_lm_request(self.address, LMRequest(prompt=prompt, model=named),
                                   timeout=self.timeout, depth=self.depth)
        chat = response.chat_completion
        if not response.success or chat is None:
            return Completion(text=f"Error: {response.error}", model=model or "unknown")
        with self._lock:
            self._calls.append(chat)
        usage = chat.usage_summary
        return Completion(
            text=str(chat.response), model=str(chat.root_model),
            input_tokens=int(usage.total_input_tokens or 0),
            output_tokens=int(usage.total_output_tokens or 0),
            cost_usd=float(usage.total_cost or 0.0))

    def drain(self) -> list[RLMChatCompletion]:
        """The completions made since the last drain, oldest first."""
        with self._lock:
            calls, self._calls = self._calls, []
        return calls


class RlmboxREPL(NonIsolatedEnv):  # type: ignore[misc]  # rlm ships no type information
    """An rlms environment whose cells run in an rlmbox sandbox under a policy.

    Takes the keyword arguments rlms passes every environment (``lm_handler_address``,
    ``context_payload``, ``depth``, ``custom_tools``, ...) plus rlmbox's own:

    Args:
        policy: rlmbox policy (preset name, path or ``Policy``).
        audit: an open audit sink to share (e.g. one ``AuditLog`` for many environments),
            else ``audit_dir`` (default: rlmbox's default audit directory).
        backend: sandbox backend (default: the policy's).
        pool_size: warm sandboxes to keep (the environment lives for one completion).
        locals_summary: after each cell, list the sandbox's variables (one more small
            cell, audited like any other) so ``REPLResult.locals`` names them as rlms'
            own REPL does; values stay in the sandbox, ``locals`` maps names to type names.
    """

    def __init__(self, lm_handler_address: tuple[str, int] | None = None,
                 context_payload: dict[str, Any] | list[Any] | str | None = None,
                 setup_code: str | None = None, persistent: bool = False, depth: int = 1,
                 custom_tools: Mapping[str, Any] | None = None, *,
                 policy: str | Path | Policy = "default", audit: AuditSink | None = None,
                 audit_dir: str | Path | None = None, backend: str | None = None,
                 pool_size: int = 0, tenant: str | None = None, locals_summary: bool = True,
                 **kwargs: Any) -> None:
        kwargs.pop("subcall_fn", None)       # rlm_query is rlmbox's: child sandboxes, one ledger
        kwargs.pop("custom_sub_tools", None)
        super().__init__(persistent=persistent, depth=depth, **kwargs)
        validate_custom_tools(dict(custom_tools or {}))
        self.lm = RlmsHandlerLM(lm_handler_address, depth=depth)
        # child RLMs of rlm_query are driven by the main backend, as rlms' own subcalls are
        self.root_lm = RlmsHandlerLM(lm_handler_address, depth=0)
        self._tools, self._data = _split_tools(custom_tools or {})
        self._locals_summary = locals_summary
        self._backend = backend
        self.runtime = Runtime(policy, lm=self.lm, rlm_lm=self.root_lm, audit=audit,
                               audit_dir=audit_dir, pool_size=pool_size, tenant=tenant)
        self.session: Session | None = None
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
        """Starts the session: stages the context, defines ``answer`` and data tools."""
        if self.session is not None:
            self.session.close("replaced")
        self.session = self.runtime.session(context=self._context, tools=self._tools,
                                            backend=self._backend)
        lines = [_ANSWER_SETUP, *(f"{name} = {python_literal(value)}"
                                  for name, value in self._data.items())]
        result = self.session.exec("\n".join(lines))
        if not result.ok:
            raise SessionError(f"the rlms environment's setup cell failed: {result.error}")

    def load_context(self, context_payload: dict[str, Any] | list[Any] | str) -> None:
        """Replaces the context. The context is staged when a session starts, so this
        starts a fresh session (the namespace is reset), unlike ``LocalREPL``."""
        self._context = context_payload
        self.setup()

    def update_handler_address(self, address: tuple[str, int]) -> None:
        """Points ``llm_query`` at another ``LMHandler`` (a new completion's)."""
        self.lm.address = address
        self.root_lm.address = address

    def execute_code(self, code: str) -> REPLResult:
        """Runs one cell in the sandbox and reports it as rlms' ``LocalREPL`` would.

        A cell error is appended to stderr as ``"\\n<Type>: <message>"``; a killed sandbox
        reports its reason the same way for that cell, and every later call raises
        ``SessionKilled`` (the namespace is gone, so the completion must stop).
        """
        if self.session is None:
            raise SessionClosed("the rlms environment was cleaned up")
        started = time.perf_counter()
        self.lm.drain()
        result = self.session.exec(code)
        stderr = result.stderr
        if result.error:
            stderr += f"\n{error_line(result.error)}"
        variables = self._variables() if result.status in ("ok", "error") else {}
        final = None
        if result.has_answer:
            answer = result.answer
            final = answer if isinstance(answer, str) else str(answer)
        return REPLResult(stdout=result.stdout, stderr=stderr, locals=variables,
                          execution_time=time.perf_counter() - started,
                          rlm_calls=self.lm.drain() + self.root_lm.drain(), final_answer=final)

    def cleanup(self) -> None:
        """Ends the session and the runtime (an audit log it opened is closed)."""
        if self.session is not None:
            self.session.close()
            self.session = None
        self.runtime.close()

    def __enter__(self) -> RlmboxREPL:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # --- internals -----------------------------------------------------------------------

    def _variables(self) -> dict[str, Any]:
        if (not self._locals_summary or self.session is None
                or self.session.state is not SessionState.READY):
            return {}
        listing = self.session.exec("SHOW_VARS()")
        names = {name: kind for name, kind in parse_show_vars(listing.stdout).items()
                 if kind in _LISTED_TYPES}
        if self._context is not None:
            names.setdefault("context", type(self._context).__name__)
        return names


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


def stop_handler(handler: LMHandler) -> None:
    """Stops an ``LMHandler`` and closes its listening socket, which its ``stop`` leaves
    open (rlms 0.1.3)."""
    server = getattr(handler, "_server", None)
    handler.stop()
    if server is not None:
        server.server_close()


class RlmboxRLM(RLM):  # type: ignore[misc]  # rlm ships no type information
    """``rlm.RLM`` whose completions run their REPL in rlmbox.

    Same constructor as ``rlm.RLM``; ``environment`` must be ``"rlmbox"`` (the default
    here) and ``environment_kwargs`` takes :class:`RlmboxREPL`'s rlmbox arguments
    (``policy``, ``audit``, ``audit_dir``, ``backend``, ...). ``persistent=True`` is
    refused: a multi-turn environment would need contexts added to a running sandbox.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        environment = kwargs.setdefault("environment", ENVIRONMENT_NAME)
        if environment != ENVIRONMENT_NAME:
            raise ValueError(f"RlmboxRLM runs environment {ENVIRONMENT_NAME!r}, "
                             f"not {environment!r}; use rlm.RLM for rlms' own environments")
        if kwargs.get("persistent"):
            raise ValueError("RlmboxRLM does not support persistent=True yet")
        super().__init__(*args, **kwargs)

    @contextmanager
    def _spawn_completion_context(
            self, prompt: str | dict[str, Any]) -> Iterator[tuple[LMHandler, RlmboxREPL]]:
        """rlms' own handler set-up; only the environment differs."""
        other = self._other_client()
        handler = LMHandler(get_client(self.backend, self.backend_kwargs or {}),
                            other_backend_client=other)
        if other is not None:
            handler.register_client(other.model_name, other)
        handler.start()
        try:
            kwargs = dict(self.environment_kwargs)
            if self.custom_tools is not None:
                kwargs["custom_tools"] = self.custom_tools
            environment = RlmboxREPL(
                lm_handler_address=(handler.host, handler.port), context_payload=prompt,
                depth=self.depth + 1, max_concurrent_subcalls=self.max_concurrent_subcalls,
                **kwargs)
            try:
                yield handler, environment
            finally:
                environment.cleanup()
        finally:
            stop_handler(handler)

    def _other_client(self) -> Any:
        if not (self.other_backends and self.other_backend_kwargs):
            return None
        return get_client(self.other_backends[0], self.other_backend_kwargs[0])
