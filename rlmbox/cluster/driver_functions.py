"""Node-side stand-ins for functions that run on the driver: a caller's tools, an LM
provider kept on the driver, the frontend's recursive sub-call, the daemon's gate.

Each is registered in the node's ``Runtime`` like the real thing, so the dispatcher binds
the arguments, the policy decides, the ledger reserves and the node's audit log records
the call exactly as for a local function; only the body runs on the driver, reached
through the running cell's channel (``cluster/cell_channel.py``).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from rlmbox.cluster.cell_channel import DriverUnreachable, current_cell
from rlmbox.cluster.lm_wire import completion_from_data, request_data
from rlmbox.lm.base import Completion, LMRequest, TextSink, Turn


def portable_signature(fn: Callable[..., Any]) -> inspect.Signature:
    """``fn``'s parameters without annotations (those may name driver-only types), for
    the node to bind calls against."""
    signature = inspect.signature(fn)
    return signature.replace(
        parameters=[p.replace(annotation=p.empty) for p in signature.parameters.values()],
        return_annotation=signature.empty)


def driver_tool(name: str, signature: inspect.Signature) -> Callable[..., Any]:
    """A function with the driver tool's parameters whose body runs on the driver. It
    waits for the driver's answer as long as the tool runs there: the dispatcher stops
    waiting at ``tool_timeout_s``, and the call keeps its ``max_concurrent`` slot until
    the answer comes (as a local tool's thread does)."""
    def call(**kwargs: Any) -> Any:
        return current_cell(f"tool.{name}").call("tool", name, kwargs)

    call.__name__ = name
    call.__signature__ = signature  # type: ignore[attr-defined]  # read by inspect
    return call


@dataclass(frozen=True)
class DriverLMSpec:
    """Marks an LM provider that stays on the driver (its name and default model)."""

    name: str
    model: str


class DriverLM:
    """An LM provider whose completions are made by the driver's provider.

    It takes whole requests (``lm.base.ConversationLM``), so what the node decided (the
    capped ``max_tokens``, the other parameters, the system prompt as a system prompt)
    reaches the driver's provider as it was recorded; a text-only provider there gets the
    request flattened, as it would on the node."""

    def __init__(self, spec: DriverLMSpec) -> None:
        self.name = spec.name
        self.model = spec.model

    def complete(self, prompt: str, *, model: str | None = None) -> Completion:
        return self.respond(LMRequest((Turn("user", prompt),)), model=model)

    def respond(self, request: LMRequest, *, model: str | None = None,
                on_text: TextSink | None = None) -> Completion:
        """The driver's completion; ``on_text`` gets the reply whole (nothing streams
        from the driver)."""
        fields = current_cell("llm_query").call(
            "lm", "respond", {"request": request_data(request), "model": model})
        completion = completion_from_data(fields)
        if on_text is not None:
            on_text(completion.text)
        return completion

    def count_input_tokens(self, request: LMRequest, *, model: str | None = None) -> int | None:
        """The driver's provider's count of the request's input tokens, or None."""
        counted = current_cell("llm_query").call(
            "lm", "count_input_tokens", {"request": request_data(request), "model": model})
        return counted if isinstance(counted, int) else None


def driver_subcall(prompt: str, model: str | None) -> str:
    """The frontend's ``rlm_query`` (``Runtime(subcall=...)``), run on the driver."""
    return str(current_cell("rlm_query").call("subcall", "subcall",
                                              {"prompt": prompt, "model": model}))


class DriverGate:
    """The node ``Runtime``'s session gate when a daemon on the driver keeps the tenant's
    cell cap: each ``rlm_query`` child's sandbox start and cell holds a slot the driver
    took through the daemon's gate (``cluster/child_slots.py``). Child sessions are not
    counted by the daemon's session caps (docs/scale-out.md, known limits)."""

    def enter(self, session_id: str, parent: str | None) -> None:
        return None

    def leave(self, session_id: str) -> None:
        return None

    @contextlib.contextmanager
    def child_work(self, parent: str) -> Iterator[None]:
        channel = current_cell("rlm_query")
        ticket = channel.call("gate", "take", {"parent": parent})
        try:
            yield
        finally:
            # the root cell over: the driver gave every slot of it back already
            with contextlib.suppress(DriverUnreachable):
                channel.call("gate", "release", {"ticket": ticket})
