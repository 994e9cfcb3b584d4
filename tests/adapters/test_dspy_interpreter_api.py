"""The parts of DSPy's interpreter API beyond ``execute``: names checked as DSPy checks them,
reserved names refused as variables, ``callbacks``, and ``execution_instructions``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import dspy
import pytest
from dspy.primitives.code_interpreter import CodeInterpreterError
from dspy.utils.callback import BaseCallback

from rlmbox.adapters.dspy import RlmboxInterpreter, RlmboxInterpreterFactory


class Recorder(BaseCallback):  # type: ignore[misc]  # dspy ships no types
    """Keeps the interpreter hooks DSPy calls, in order."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def on_interpreter_startup_start(self, call_id: str, instance: Any,
                                     inputs: dict[str, Any]) -> None:
        self.seen.append(("startup", None))

    def on_interpreter_execute_start(self, call_id: str, instance: Any,
                                     inputs: dict[str, Any]) -> None:
        self.seen.append(("execute", inputs.get("code")))

    def on_interpreter_execute_end(self, call_id: str, outputs: Any | None,
                                   exception: BaseException | None = None) -> None:
        self.seen.append(("executed", outputs))

    def on_interpreter_tool_call_start(self, call_id: str, instance: Any,
                                       inputs: dict[str, Any]) -> None:
        self.seen.append(("tool", (inputs.get("tool_name"), inputs.get("kwargs"))))

    def on_interpreter_tool_call_end(self, call_id: str, outputs: Any | None,
                                     exception: BaseException | None = None) -> None:
        self.seen.append(("tool done", outputs))

    def on_interpreter_shutdown_start(self, call_id: str, instance: Any,
                                      inputs: dict[str, Any]) -> None:
        self.seen.append(("shutdown", None))


@pytest.mark.parametrize("name", ["not a name", "class", "1st", "SUBMIT", "__builtins__",
                                  "FINAL", "_rlmbox_vars"])
def test_tool_names_are_checked_when_built_and_when_run(
        interpreter: Callable[..., RlmboxInterpreter], name: str) -> None:
    with pytest.raises(ValueError, match="invalid names"):
        RlmboxInterpreter(tools={name: lambda: 1})
    interp = interpreter()
    interp.tools[name] = lambda: 1     # DSPy fills the mutable dict after building
    with pytest.raises(ValueError, match="invalid names"):
        interp.execute("pass")


@pytest.mark.parametrize(("fields", "why"), [
    ([{"name": "answer"}, {"name": "answer"}], "unique"),
    ([{"name": "for"}], "identifiers"),
    ([{"name": "two words"}], "identifiers"),
    ([{"type": "str"}], "identifiers"),
    ([{"name": "answer", "default": float("nan")}], "JSON"),
])
def test_output_fields_are_checked_when_built(fields: list[dict[str, Any]], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        RlmboxInterpreter(output_fields=fields)


@pytest.mark.parametrize("name", ["SUBMIT", "__builtins__", "FINAL", "lookup", "_rlmbox_vars"])
def test_reserved_names_and_tool_names_are_refused_as_variables(
        interpreter: Callable[..., RlmboxInterpreter], name: str) -> None:
    interp = interpreter(tools={"lookup": lambda: 1})
    with pytest.raises(CodeInterpreterError, match="invalid variable names"):
        interp.execute("pass", variables={name: 1})
    assert interp.execute("print(lookup())") == "1"   # nothing was bound, nothing broken


def test_callbacks_see_startup_cells_tool_calls_and_shutdown(
        interpreter: Callable[..., RlmboxInterpreter]) -> None:
    recorder = Recorder()
    interp = interpreter(tools={"double": lambda n: n * 2}, callbacks=[recorder])
    interp.start()
    assert interp.execute("print(double(n=21))") == "42"
    interp.shutdown()
    assert recorder.seen == [
        ("startup", None), ("execute", "print(double(n=21))"),
        ("tool", ("double", {"n": 21})), ("tool done", 42), ("executed", "42"),
        ("shutdown", None)]


def test_the_factory_hands_its_callbacks_to_each_interpreter(
        policy_file: Callable[..., Path], tmp_path: Path) -> None:
    recorder = Recorder()
    with RlmboxInterpreterFactory(policy=policy_file(), audit_dir=tmp_path / "audit",
                                  callbacks=[recorder]) as factory:
        interp = factory()
        try:
            interp.execute("x = 1")
        finally:
            interp.shutdown()
    # the first cell starts the interpreter, inside its own execute, as DSPy's do
    assert [kind for kind, _ in recorder.seen] == ["execute", "startup", "executed",
                                                   "shutdown"]


def test_execution_instructions_are_on_the_interpreter_class_too() -> None:
    instructions = RlmboxInterpreter.execution_instructions
    assert "rlmbox sandbox" in instructions
    assert RlmboxInterpreterFactory.execution_instructions == instructions
    # dspy.RLM reads them from whatever factory it is given, here the class itself
    rlm = dspy.RLM("question -> answer", interpreter_factory=RlmboxInterpreter)
    assert instructions in rlm.generate_action.signature.instructions
