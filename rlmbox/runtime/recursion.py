"""``rlm_query``: a recursive RLM, run as a child session of the caller.

The child gets the prompt as its ``context``, runs in a sandbox of its own under the same
policy, shares the caller's ledger (so budgets span the whole tree and ``max_depth`` binds),
and is recorded in the audit log with its parent and depth. Its root model is the runtime's
``rlm_lm`` (``model`` names another of its models; the policy decides on the model that
runs, the default filled in; ``max_tokens``, ``temperature`` and ``stop`` are its root
loop's, capped by the policy's ``lm_calls``), and each of its completions is metered by the child's
dispatcher like a host call. The child's answer (or a short note that it found none) is
the call's value.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from rlmbox.errors import RlmboxError
from rlmbox.lm.base import LMProvider, TextSink
from rlmbox.runtime.bounded_call import Deadline
from rlmbox.runtime.hostfns import CallContext, HostFunction, model_arg
from rlmbox.runtime.lm_params import LM_PARAMETERS, call_options
from rlmbox.runtime.rlm_loop import run_rlm
from rlmbox.runtime.session import RootTextCallback, Session

CHILD_TASK = "Answer the request given in `context`."
# The LM parameters rlm_query takes for its child's root loop (its system prompt is the
# loop's instructions, after root_lm's policy ``system``).
CHILD_PARAMETERS = tuple(p for p in LM_PARAMETERS if p != "system")
MAX_CHILD_STEPS = 8


class SessionFactory(Protocol):
    def __call__(self, context: Any, *, parent: Session) -> Session: ...


def rlm_functions(spawn: SessionFactory, find: Callable[[str], Session | None],
                  root: LMProvider) -> list[HostFunction]:
    """``rlm_query`` and ``rlm_query_batched`` over ``spawn`` (a child-session factory)."""

    def handle(ctx: CallContext, args: dict[str, Any]) -> str:
        prompt = args.get("prompt")
        if not isinstance(prompt, str):
            raise TypeError("rlm_query: the prompt must be a str")
        model = model_arg(args.get("model"))
        parent = find(ctx.session_id)
        if parent is None:
            raise RlmboxError("rlm_query: the calling session is gone")
        relay = parent.root_text
        # started in the parent's hand: its close waits for the start (and closes the child,
        # below), so no session of the tree begins after the parent's session.end
        with parent.dispatcher.in_hand():
            child = spawn(prompt, parent=parent)
            # abandoned (the caller's deadline, an interrupt, the close): the child ends
            # too, not just its waiter; at once if that happened while it started
            ctx.on_cancel(lambda: child.close("abandoned: its calling cell stopped waiting"))
        with child:
            child.root_text = relay   # its own children's replies stream the same way
            if ctx.deadline is not None:
                child.caller_deadline = Deadline(
                    ctx.deadline, "the calling cell's wall time",
                    round(max(0.0, ctx.deadline - time.monotonic()), 3))
            trajectory = run_rlm(child, root, CHILD_TASK, context=prompt,
                                 max_steps=MAX_CHILD_STEPS, model=model,
                                 options=call_options(args),
                                 on_text=None if relay is None else _relayed(relay, child))
        if not trajectory.answered:
            return f"[rlm_query: no answer after {len(trajectory.steps)} step(s)]"
        answer = trajectory.answer
        return answer if isinstance(answer, str) else repr(answer)

    # the child's root model, as the policy sees it; the LM parameters of its root loop
    return _rlm_query_pair(handle, CHILD_PARAMETERS,
                           defaults={"model": root.model, **dict.fromkeys(CHILD_PARAMETERS)},
                           none_means_default=True)


def _relayed(relay: RootTextCallback, child: Session) -> TextSink:
    """The child's streamed root text to ``relay``; a relay that raises is dropped, so a
    caller's callback can never fail the child's LM call."""
    live = [relay]

    def send(text: str) -> None:
        if not live:
            return
        try:
            live[0](child.id, child.depth, text)
        except Exception:
            live.clear()
    return send


def frontend_rlm_functions(subcall: Callable[[str, str | None], str]) -> list[HostFunction]:
    """``rlm_query`` and ``rlm_query_batched`` over a frontend's own sub-call function
    (rlms' ``subcall_fn``): still decided by the policy and reserved per call like any
    ``rlm_query``; what the sub-call runs is the frontend's business. ``model=None`` stays
    None (the frontend's default, which the host does not know)."""

    def handle(ctx: CallContext, args: dict[str, Any]) -> str:
        prompt = args.get("prompt")
        if not isinstance(prompt, str):
            raise TypeError("rlm_query: the prompt must be a str")
        model = args.get("model")
        if model is not None and not isinstance(model, str):
            raise TypeError("rlm_query: model must be a str or None")
        return subcall(prompt, model)

    return _rlm_query_pair(handle, (), defaults={"model": None}, none_means_default=False)


def _rlm_query_pair(handle: Callable[[CallContext, dict[str, Any]], str],
                    parameters: tuple[str, ...], defaults: dict[str, Any], *,
                    none_means_default: bool) -> list[HostFunction]:
    return [
        HostFunction("rlm_query", ("prompt", "model", *parameters), handle, defaults=defaults,
                     none_means_default=none_means_default, prompt_param="prompt",
                     keyword_only=len(parameters)),
        HostFunction("rlm_query_batched", ("prompts", "model", *parameters), handle,
                     defaults=defaults, none_means_default=none_means_default,
                     prompt_param="prompt", batch_param="prompts",
                     keyword_only=len(parameters)),
    ]
