"""``RlmboxRLM``: ``rlm.RLM`` whose REPLs are rlmbox sandboxes, by rlms' own code paths.

rlms resolves two things by module-global name and offers no registry for either: the
environment (``get_environment``, a closed list) in ``_spawn_completion_context``, and the
class of a child RLM (``RLM``) in ``_subcall``. ``RlmboxRLM`` runs rlms' own two methods with
just those names bound to rlmbox's (:func:`_rebound`), so everything else stays rlms': the
LM handler, ``get_client`` looked up at call time (where rlms' tests and users inject an LM),
persistent multi-turn mode, budgets, timeouts, callbacks and error strings. Nothing in rlms is
patched; other ``rlm.RLM`` objects in the process are unaffected.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from rlm import RLM
from rlm.core.lm_handler import LMHandler
from rlm.core.types import RLMChatCompletion

from rlmbox.adapters.rlms_env import RlmboxREPL
from rlmbox.adapters.rlms_handler import stop_handler
from rlmbox.runtime.events import AuditSink

ENVIRONMENT_NAME = "rlmbox"


def _rebound(function: Callable[..., Any], **names: Any) -> Callable[..., Any]:
    """``function`` with some of its module's globals replaced, read at call time (so a
    name patched in rlms' module, e.g. ``get_client``, is seen)."""
    return types.FunctionType(function.__code__, {**function.__globals__, **names},
                              function.__name__, function.__defaults__, function.__closure__)


class _ClosingLMHandler(LMHandler):  # type: ignore[misc]
    """rlms' ``LMHandler`` whose ``stop`` also closes its listening socket (rlms 0.1.3's
    leaves it open, one file descriptor per completion)."""

    def stop(self) -> None:
        stop_handler(self)


_SPAWN = RLM._spawn_completion_context.__wrapped__
_SUBCALL = RLM._subcall


class RlmboxRLM(RLM):  # type: ignore[misc]  # rlm ships no type information
    """``rlm.RLM`` whose completions run their REPL in rlmbox.

    Same constructor as ``rlm.RLM``; ``environment`` must be ``"rlmbox"`` (the default
    here) and ``environment_kwargs`` takes :class:`RlmboxREPL`'s rlmbox arguments
    (``policy``, ``audit``, ``audit_dir``, ``backend``, ...). ``persistent=True`` keeps one
    sandbox across ``completion`` calls (``context_N``, ``history_N``). With
    ``max_depth > 1``, ``rlm_query`` runs a child ``RlmboxRLM`` in a sandbox of its own.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        environment = kwargs.setdefault("environment", ENVIRONMENT_NAME)
        if environment != ENVIRONMENT_NAME:
            raise ValueError(f"RlmboxRLM runs environment {ENVIRONMENT_NAME!r}, "
                             f"not {environment!r}; use rlm.RLM for rlms' own environments")
        self._audit: AuditSink | None = None   # the running environment's, for children
        super().__init__(*args, **kwargs)

    def _spawn_completion_context(
            self, prompt: str | dict[str, Any]
    ) -> AbstractContextManager[tuple[LMHandler, RlmboxREPL]]:
        """rlms' own handler and environment set-up; the environment is an RlmboxREPL."""
        spawn = _rebound(_SPAWN, get_environment=self._environment, LMHandler=_ClosingLMHandler)
        return contextmanager(spawn)(self, prompt)

    def _subcall(self, prompt: str, model: str | None = None) -> RLMChatCompletion:
        """rlms' own sub-call (depth, budget and timeout hand-down, callbacks, error
        strings); the child is an ``RlmboxRLM`` writing to this one's open audit log (an
        audit directory has one writer at a time)."""
        return _rebound(_SUBCALL, RLM=self._child)(self, prompt, model)

    def _child(self, *args: Any, **kwargs: Any) -> RlmboxRLM:
        audit = self._audit
        if audit is not None:
            env_kwargs = {**(kwargs.get("environment_kwargs") or {}), "audit": audit}
            env_kwargs.pop("audit_dir", None)
            kwargs["environment_kwargs"] = env_kwargs
        return RlmboxRLM(*args, **kwargs)

    def _validate_persistent_environment_support(self) -> None:
        """RlmboxREPL implements rlms' ``SupportsPersistence``."""

    def _environment(self, name: str, kwargs: dict[str, Any]) -> RlmboxREPL:
        """Stands in for rlms' ``get_environment``. rlms hands ``subcall_fn`` only to the
        environments it names, so it is added here on the same condition (``max_depth > 1``)."""
        if self.max_depth > 1:
            kwargs.setdefault("subcall_fn", self._subcall)
        environment = RlmboxREPL(**kwargs)
        self._audit = environment.audit
        return environment
