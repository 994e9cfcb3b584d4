"""Built-in host functions: what model code may call, each a named capability.

A host function is a name, its parameter names (so every call can be bound to named
arguments before the policy decides on it) and a handler that runs on the host. Handlers
never see the sandbox; they get bound arguments and a :class:`CallContext`.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rlmbox.errors import PolicyError
from rlmbox.lm.base import (
    Completion,
    LMProvider,
    LMRequest,
    Turn,
    count_input_tokens,
    respond,
)
from rlmbox.runtime.crossing import crossable
from rlmbox.runtime.lm_params import LM_PARAMETERS, call_options

MAX_BATCH = 256


@dataclass
class CallContext:
    """Per-call facts measured on the host, filled in by handlers for the audit record."""

    session_id: str
    depth: int
    usage: list[Completion] = field(default_factory=list)
    deadline: float | None = None   # time.monotonic() when the calling cell's time runs out
    #: set when an input-token budget binds the call: holds a count made before sending,
    #: raising BudgetExceeded when it would not fit (the request must then not be sent)
    hold_input: Callable[[int], None] | None = None
    #: holds tokens if they fit, else holds nothing and records nothing: False
    try_hold_input: Callable[[int], bool] | None = None
    _cancels: list[Callable[[], None]] = field(default_factory=list, repr=False)
    _cancelled: bool = field(default=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def on_cancel(self, action: Callable[[], None]) -> None:
        """Registers how to stop this call's work if the host abandons the call (a thread
        cannot be killed; a child session can be closed). Runs at once if already so."""
        with self._lock:
            if not self._cancelled:
                self._cancels.append(action)
                return
        action()

    def cancel(self) -> None:
        """Runs the registered actions once: the host stopped waiting for this call."""
        with self._lock:
            self._cancelled, actions, self._cancels = True, self._cancels, []
        for action in actions:
            action()


Handler = Callable[[CallContext, dict[str, Any]], Any]


@dataclass(frozen=True)
class HostFunction:
    """A capability model code can call; every call is decided, reserved and audited.

    ``defaults`` are filled in by :meth:`bind` before the policy decides, so a rule sees
    the value the host will act on, never a gap the host fills in later.
    """

    name: str
    params: tuple[str, ...]
    handler: Handler
    defaults: Mapping[str, Any] = field(default_factory=dict)
    none_means_default: bool = False   # ``model=None`` (or "") means "the default"
    prompt_param: str | None = None
    batch_param: str | None = None   # per-item reservations, one decision on the list
    keyword_only: int = 0   # the last this many params only by name (LM parameters)

    def bind(self, args: list[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Names positional arguments and fills defaults; refuses unknown, duplicate or
        missing ones (``TypeError``)."""
        positional = len(self.params) - self.keyword_only
        if len(args) > positional:
            raise TypeError(f"{self.name}() takes {positional} positional arguments, "
                            f"{len(args)} given")
        bound = dict(zip(self.params, args, strict=False))
        for key, value in kwargs.items():
            if key not in self.params:
                raise TypeError(f"{self.name}() got an unexpected argument {_shown(key)}")
            if key in bound:
                raise TypeError(f"{self.name}() got {_shown(key)} twice")
            bound[key] = value
        for key, default in self.defaults.items():
            # "" too: providers run ``model or default``, so it must be decided as the default
            if key not in bound or (self.none_means_default and bound[key] in (None, "")):
                bound[key] = default
        missing = [p for p in self.params if p not in bound]
        if missing:
            raise TypeError(f"{self.name}() is missing argument(s): {', '.join(missing)}")
        return bound


def _shown(name: str) -> str:
    """A sandbox-chosen argument name as an error may echo it: short (it is recorded)."""
    text = repr(name)
    return text if len(text) <= 64 else f"{text[:60]}...' ({len(name)} characters)"


def signature_of(fn: Callable[..., Any], what: str) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The named parameters of ``fn`` and their defaults (``*args``/``**kwargs`` ignored)."""
    try:
        parameters = [p for p in inspect.signature(fn).parameters.values()
                      if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY,
                                    p.POSITIONAL_ONLY)]
    except (TypeError, ValueError) as exc:
        raise PolicyError(f"{what}: cannot read its signature: {exc}") from exc
    return (tuple(p.name for p in parameters),
            {p.name: p.default for p in parameters if p.default is not p.empty})


def _prompt_text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name}: the prompt must be a str, not {type(value).__name__}")
    return value


def model_arg(value: Any) -> str:
    """The bound ``model`` (the provider's default already filled in by ``bind``)."""
    if not isinstance(value, str):
        raise TypeError("model must be a str or None")
    return value


#: tokens a request's framing may add to its text (roles, message boundaries)
_REQUEST_OVERHEAD_TOKENS = 64


def _token_bound(request: LMRequest) -> int:
    """At least as many tokens as the request can be: a token is at least one byte of
    text, plus the framing."""
    text = (request.system or "") + "".join(turn.text for turn in request.turns)
    return len(text.encode("utf-8", "surrogatepass")) + _REQUEST_OVERHEAD_TOKENS


def _hold_input_before_sending(ctx: CallContext, lm: LMProvider, request: LMRequest,
                               model: str) -> None:
    """Holds the request's input in the ledger before it is sent, when a budget binds it.

    The byte bound is held when it fits: it is an upper bound, so the call cannot cross
    the budget, and concurrent calls see it held. When it does not fit the provider is
    asked to count (a request of its own) and the count is held, or the call refused
    before any completion is requested. A provider that cannot count sends it uncounted
    (its usage is known after the call)."""
    if ctx.hold_input is None or ctx.try_hold_input is None:
        return
    if ctx.try_hold_input(_token_bound(request)):
        return
    counted = count_input_tokens(lm, request, model=model)
    if counted:
        ctx.hold_input(counted)


def _completion_handler(lm: LMProvider, name: str) -> Handler:
    """One prompt -> one completion, its usage noted for the ledger and the audit log. The
    LM parameters in ``args`` are the effective ones (see :mod:`lm_params`)."""
    def handle(ctx: CallContext, args: dict[str, Any]) -> str:
        request = LMRequest((Turn("user", _prompt_text(args.get("prompt"), name)),),
                            system=args.get("system"), options=call_options(args))
        model = model_arg(args.get("model"))
        _hold_input_before_sending(ctx, lm, request, model)
        completion = respond(lm, request, model=model)
        ctx.usage.append(completion)
        return completion.text
    return handle


# Each None: the policy's default, else the provider's.
_LM_DEFAULTS = dict.fromkeys(LM_PARAMETERS)


def llm_query(lm: LMProvider) -> HostFunction:
    return HostFunction("llm_query", ("prompt", "model", *LM_PARAMETERS),
                        _completion_handler(lm, "llm_query"),
                        defaults={"model": lm.model, **_LM_DEFAULTS}, none_means_default=True,
                        prompt_param="prompt", keyword_only=len(LM_PARAMETERS))


def llm_query_batched(lm: LMProvider) -> HostFunction:
    """Runs the prompts concurrently on the host; the list is decided once, each item is
    budgeted alone by the dispatcher, which calls this handler once per admitted item."""
    return HostFunction("llm_query_batched", ("prompts", "model", *LM_PARAMETERS),
                        _completion_handler(lm, "llm_query_batched"),
                        defaults={"model": lm.model, **_LM_DEFAULTS}, none_means_default=True,
                        prompt_param="prompt", batch_param="prompts",
                        keyword_only=len(LM_PARAMETERS))


#: what model code finds in its namespace from rlmbox itself: a tool by one of these names
#: would replace the metered, policy-decided built-in (or FINAL, or the context) with itself
RESERVED_NAMES = frozenset({
    "llm_query", "llm_query_batched", "rlm_query", "rlm_query_batched", "context",
    "FINAL", "FINAL_VAR", "SHOW_VARS", "answer", "HostCallError", "PolicyDenied",
    "BudgetExceeded", "__builtins__"})


def tool(name: str, fn: Callable[..., Any]) -> HostFunction:
    """Wraps a caller-registered Python function as the host function ``tool.<name>``."""
    if not name.isidentifier():
        raise PolicyError(f"tool name {name!r} is not a Python identifier")
    if name in RESERVED_NAMES:
        raise PolicyError(f"tool name {name!r} is one of rlmbox's own names in the sandbox "
                          f"({', '.join(sorted(RESERVED_NAMES))}); a tool cannot replace it")
    params, defaults = signature_of(fn, f"tool {name!r}")

    def handle(ctx: CallContext, args: dict[str, Any]) -> Any:
        return crossable(f"tool.{name}", fn(**args))
    return HostFunction(f"tool.{name}", params, handle, defaults=defaults)


def context_functions(store: Any) -> list[HostFunction]:
    """The gated-context functions over a host :class:`ContextStore`."""
    def method(name: str) -> HostFunction:
        bound_method = getattr(store, name)
        params, defaults = signature_of(bound_method, f"context.{name}")
        # the host fills these, never model code: a cell cannot lend itself more time
        host_filled = {"deadline"} & set(params)

        def handle(ctx: CallContext, args: dict[str, Any]) -> Any:
            filled = {"deadline": ctx.deadline} if host_filled else {}
            return bound_method(**args, **filled)
        return HostFunction(f"context.{name}", tuple(p for p in params if p not in host_filled),
                            handle, defaults={k: v for k, v in defaults.items()
                                              if k not in host_filled})

    return [method(name) for name in ("len", "read", "search", "lines", "documents",
                                      "document")]
