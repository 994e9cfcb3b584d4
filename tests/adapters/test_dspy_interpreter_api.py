"""The parts of DSPy's interpreter API beyond ``execute``: names checked as DSPy checks them,
reserved names refused as variables, ``callbacks``, and ``execution_instructions``."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dspy
import pytest
from dspy.primitives.code_interpreter import CodeExecutionError, CodeInterpreterError
from dspy.utils.callback import BaseCallback

from rlmbox.adapters.dspy import RlmboxInterpreter, RlmboxInterpreterFactory
from tests.adapters.conftest import records


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
    with pytest.raises(CodeInterpreterError, match="invalid names"):
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


def test_submit_follows_output_fields_changed_after_start(
        interpreter: Callable[..., RlmboxInterpreter]) -> None:
    """DSPy sets ``output_fields`` on a running interpreter (a caller-owned one that RLM
    reuses): ``SUBMIT`` takes the fields current at that ``execute``, as DSPy's do."""
    interp = interpreter()
    assert interp.execute("kept = 41") is None
    interp.output_fields = [{"name": "answer"}]
    assert interp.execute("SUBMIT(answer=kept + 1)").output == {"answer": 42}
    interp.output_fields = [{"name": "left"}, {"name": "right"}]
    assert interp.execute("SUBMIT(1, 2)").output == {"left": 1, "right": 2}
    interp.output_fields = None
    assert interp.execute("SUBMIT(kept)").output == {"output": 41}


def test_a_refused_variable_name_reads_as_dspys_invalid_names(
        interpreter: Callable[..., RlmboxInterpreter]) -> None:
    """DSPy's interpreters say "invalid names"; callers match on it."""
    with pytest.raises(CodeInterpreterError, match="invalid names"):
        interpreter().execute("1", variables={"class": 1})


def test_submit_changed_in_a_cell_that_does_not_compile_is_sent_again(
        interpreter: Callable[..., RlmboxInterpreter]) -> None:
    interp = interpreter()
    interp.execute("pass")
    interp.output_fields = [{"name": "answer"}]
    with pytest.raises(SyntaxError):
        interp.execute("if")
    assert interp.execute("SUBMIT(answer=1)").output == {"answer": 1}


def test_execution_timeout_shortens_the_cells_time_limit(
        interpreter: Callable[..., RlmboxInterpreter]) -> None:
    """DSPy's ``LocalInterpreter(execution_timeout=...)``: a cell past it is stopped (rlmbox
    interrupts it and keeps the namespace, under a test policy allowing 10 s a cell); a
    host tool that answers in time is waited for."""
    def slow() -> int:
        time.sleep(0.05)
        return 42

    interp = interpreter(tools={"slow": slow}, execution_timeout=0.5)
    interp.execute("kept = 7")
    started = time.monotonic()
    with pytest.raises(CodeExecutionError, match="exceeded execution timeout"):
        interp.execute("import time\ntime.sleep(5)")
    assert time.monotonic() - started < 3
    assert interp.execute("kept") == 7
    assert interp.execute("slow()") == 42


def test_execution_timeout_is_checked_as_dspy_checks_it() -> None:
    with pytest.raises(ValueError, match="execution_timeout"):
        RlmboxInterpreter(execution_timeout=0)


def test_a_refused_variable_starts_no_session(
        interpreter: Callable[..., RlmboxInterpreter], tmp_path: Path) -> None:
    """As DSPy's interpreters: names are checked before anything starts."""
    interp = interpreter()
    with pytest.raises(CodeInterpreterError, match="invalid names"):
        interp.execute("1", variables={"class": 1})
    interp.shutdown()
    assert not any(record["event"] == "session.create" for record in records(tmp_path / "audit"))


def test_submit_and_tools_are_restored_after_a_cell_replaces_them(
        interpreter: Callable[..., RlmboxInterpreter]) -> None:
    """DSPy restores the names it owns before every ``execute``."""
    interp = interpreter(tools={"add": lambda left, right: left + right})
    interp.execute("SUBMIT = None\nadd = None")
    assert interp.execute("add(19, 23)") == 42
    assert interp.execute("SUBMIT(42)").output == {"output": 42}


def test_a_value_that_cannot_cross_starts_no_session(
        interpreter: Callable[..., RlmboxInterpreter], tmp_path: Path) -> None:
    """DSPy: "Invalid host variables should fail before the interpreter process starts"."""
    interp = interpreter()
    with pytest.raises(CodeInterpreterError, match="Unable to serialize object as JSON"):
        interp.execute("1", variables={"handle": object()})
    interp.shutdown()
    assert not any(record["event"] == "session.create" for record in records(tmp_path / "audit"))


def test_set_variables_arrive_as_sorted_lists(
        interpreter: Callable[..., RlmboxInterpreter]) -> None:
    """As DSPy's ``PythonInterpreter``: a set is a sorted list when its items sort."""
    value = {"ints": {8, 1}, "nested": [{"mixed": {1, "a"}}]}
    result = interpreter().execute("data", variables={"data": value})
    assert result["ints"] == [1, 8]
    assert sorted(result["nested"][0]["mixed"], key=str) == [1, "a"]
