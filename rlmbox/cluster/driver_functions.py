"""Node-side stand-ins for functions that run on the driver: a caller's tools, an LM
provider kept on the driver, the frontend's recursive sub-call.

Each is registered in the node's ``Runtime`` like the real thing, so the dispatcher binds
the arguments, the policy decides, the ledger reserves and the node's audit log records
the call exactly as for a local function; only the body runs on the driver, reached
through the running cell's channel (``cluster/cell_channel.py``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rlmbox.cluster.cell_channel import current_cell
from rlmbox.lm.base import Completion


def portable_signature(fn: Callable[..., Any]) -> inspect.Signature:
    """``fn``'s parameters without annotations (those may name driver-only types), for
    the node to bind calls against."""
    signature = inspect.signature(fn)
    return signature.replace(
        parameters=[p.replace(annotation=p.empty) for p in signature.parameters.values()],
        return_annotation=signature.empty)


def driver_tool(name: str, signature: inspect.Signature, wait_s: float) -> Callable[..., Any]:
    """A function with the driver tool's parameters whose body runs on the driver; its
    answer waits at most ``wait_s`` (the policy's ``tool_timeout_s``)."""
    def call(**kwargs: Any) -> Any:
        return current_cell(f"tool.{name}").call("tool", name, kwargs, wait_s)

    call.__name__ = name
    call.__signature__ = signature  # type: ignore[attr-defined]  # read by inspect
    return call


@dataclass(frozen=True)
class DriverLMSpec:
    """Marks an LM provider that stays on the driver (its name and default model)."""

    name: str
    model: str


class DriverLM:
    """An LM provider whose completions are made by the driver's provider."""

    def __init__(self, spec: DriverLMSpec) -> None:
        self.name = spec.name
        self.model = spec.model

    def complete(self, prompt: str, *, model: str | None = None) -> Completion:
        fields = current_cell("llm_query").call("lm", "complete",
                                                {"prompt": prompt, "model": model})
        return Completion(**fields)


def driver_subcall(prompt: str, model: str | None) -> str:
    """The frontend's ``rlm_query`` (``Runtime(subcall=...)``), run on the driver."""
    return str(current_cell("rlm_query").call("subcall", "subcall",
                                              {"prompt": prompt, "model": model}))
