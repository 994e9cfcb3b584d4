"""The driver's side of host calls whose body runs on the driver: it runs what a node
asked for and turns the outcome into a :class:`DriverAnswer`.

The node already decided, reserved and recorded the call; here only the body runs. A
tool's value is checked as any tool result is (``runtime/crossing.py``) before it leaves,
so a value the sandbox could not take is that call's error, never a broken reply.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from rlmbox.cluster.cell_wire import CallEvent, DriverAnswer
from rlmbox.cluster.lm_wire import completion_data, request_from_data
from rlmbox.errors import RlmboxError, ToolError
from rlmbox.lm.base import LMProvider, count_input_tokens, respond
from rlmbox.runtime.contract import Subcall
from rlmbox.runtime.crossing import UncrossableResult, crossable


class DriverCalls:
    """What runs on the driver for one session: its tools, the runtime's LM provider
    when it stays on the driver, and the frontend's sub-call."""

    def __init__(self, tools: Mapping[str, Callable[..., Any]], lm: LMProvider | None,
                 subcall: Subcall | None) -> None:
        self._tools = dict(tools)
        self._lm = lm
        self._subcall = subcall

    def add_tools(self, tools: Mapping[str, Callable[..., Any]]) -> None:
        self._tools = {**self._tools, **tools}

    def run(self, event: CallEvent) -> DriverAnswer:
        """The outcome of one call; never raises for the function's own failure."""
        try:
            value_json = json.dumps(self._value(event), ensure_ascii=False, allow_nan=False)
        except UncrossableResult as exc:
            return DriverAnswer(ok=False, message=str(exc), uncrossable=True)
        except ToolError as exc:
            return DriverAnswer(ok=False, error_type=type(exc).__name__, message=str(exc),
                                tool_error=True)
        except Exception as exc:   # the function's failure (or a value JSON cannot hold)
            return DriverAnswer(ok=False, error_type=type(exc).__name__, message=str(exc),
                                rlmbox_error=isinstance(exc, RlmboxError))
        return DriverAnswer(ok=True, value_json=value_json)

    def _value(self, event: CallEvent) -> Any:
        if event.kind == "tool":
            tool = self._tools.get(event.name)
            if tool is None:
                raise LookupError(f"no tool {event.name!r} on the driver")
            return crossable(f"tool.{event.name}", tool(**event.args))
        if event.kind == "lm" and self._lm is not None:
            request = request_from_data(event.args["request"])
            if event.name == "count_input_tokens":
                return count_input_tokens(self._lm, request, model=event.args["model"])
            if event.name == "respond":
                return completion_data(respond(self._lm, request, model=event.args["model"]))
        if event.kind == "subcall" and self._subcall is not None:
            return str(self._subcall(event.args["prompt"], event.args["model"]))
        raise LookupError(f"the driver has no {event.kind} to run")
