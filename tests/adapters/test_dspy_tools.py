"""DSPy tools on rlmbox: their results cross as DSPy's interpreters convert them, ``async``
tools are awaited, a result that cannot cross is the cell's error naming the tool, and a tool
cannot run its own interpreter again."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import pydantic
import pytest
from dspy.primitives.code_interpreter import CodeExecutionError, CodeInterpreterError

from rlmbox.adapters.dspy import RlmboxInterpreter


@dataclasses.dataclass
class Hit:
    doc: str
    score: float


class Point(NamedTuple):
    x: int
    y: int


class Person(pydantic.BaseModel):
    name: str
    born: datetime.date


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text for this value")


def _seen(interp: RlmboxInterpreter, call: str) -> Any:
    """What the sandbox received from ``call``, read back as JSON."""
    return json.loads(str(interp.execute(f"import json\nprint(json.dumps({call}))")))


def test_structured_tool_results_cross_as_dspy_converts_them(
        interpreter: Callable[..., RlmboxInterpreter]) -> None:
    tools: dict[str, Callable[..., Any]] = {
        "hit": lambda: Hit("a.txt", 0.5),
        "point": lambda: Point(1, 2),
        "person": lambda: Person(name="Ada", born=datetime.date(1815, 12, 10)),
        "tags": lambda: {"b", "a", "c"},
        "nested": lambda: {"hits": [Hit("b", 1.0)], "where": (Point(3, 4),)},
        "nan": lambda: float("nan"),
        "inf_in_list": lambda: [1.0, float("inf")],
        "nothing": lambda: None,
    }
    interp = interpreter(tools=tools)
    assert _seen(interp, "hit()") == {"doc": "a.txt", "score": 0.5}
    assert _seen(interp, "point()") == {"x": 1, "y": 2}
    assert _seen(interp, "person()") == {"name": "Ada", "born": "1815-12-10"}
    assert sorted(_seen(interp, "tags()")) == ["a", "b", "c"]
    assert _seen(interp, "nested()") == {"hits": [{"doc": "b", "score": 1.0}],
                                         "where": [{"x": 3, "y": 4}]}
    # not strict JSON even after conversion: the text of the value, as PythonInterpreter sends
    assert _seen(interp, "nan()") == "nan"
    assert _seen(interp, "inf_in_list()") == "[1.0, inf]"
    assert _seen(interp, "nothing()") is None


def test_async_tools_are_awaited(interpreter: Callable[..., RlmboxInterpreter]) -> None:
    async def fetch(key: str) -> str:
        await asyncio.sleep(0)
        return key * 2

    interp = interpreter(tools={"fetch": fetch})
    assert interp.execute("print(fetch('ab'))") == "abab"
    assert interp.execute("print(fetch(key='c'))") == "cc"


def test_a_result_that_cannot_cross_is_the_cells_error_naming_the_tool(
        interpreter: Callable[..., RlmboxInterpreter]) -> None:
    interp = interpreter(tools={"broken": Unprintable, "fine": lambda: 1})
    with pytest.raises(CodeExecutionError, match=r"broken.*cannot cross") as raised:
        interp.execute("broken()")
    assert "protocol violation" not in str(raised.value)
    # the sandbox was not blamed and lives on
    assert interp.execute("print(fine())") == "1"
    assert interp.execute("try:\n    broken()\nexcept Exception as exc:\n"
                          "    print(type(exc).__name__)") == "HostCallError"


def test_a_tool_that_runs_its_own_interpreter_gets_dspys_error(
        interpreter: Callable[..., RlmboxInterpreter]) -> None:
    holder: list[RlmboxInterpreter] = []
    finished = threading.Event()

    def recurse() -> str:
        try:
            return str(holder[0].execute("print('inner')"))
        finally:
            finished.set()

    interp = interpreter(tools={"recurse": recurse})
    holder.append(interp)
    result: list[Any] = []
    worker = threading.Thread(target=lambda: result.append(_outcome(interp, "recurse()")),
                              daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "the re-entrant execute deadlocked"
    assert finished.is_set()
    assert result == [("CodeExecutionError", result[0][1])]
    assert ("tool.recurse failed: RlmboxInterpreter already has an active execution"
            in result[0][1])
    assert interp.execute("print('after')") == "after"


def _outcome(interp: RlmboxInterpreter, code: str) -> tuple[str, str]:
    try:
        return ("value", str(interp.execute(code)))
    except (CodeExecutionError, CodeInterpreterError) as exc:
        return (type(exc).__name__, str(exc))


def test_a_tool_that_raises_shows_its_type_not_its_message(
        interpreter: Callable[..., RlmboxInterpreter]) -> None:
    def leaky() -> str:
        raise RuntimeError("token=s3cr3t in /home/host/.netrc")

    def picky(n: int) -> int:
        raise ValueError(f"n must be even, got {n}")

    interp = interpreter(tools={"leaky": leaky, "picky": picky})
    with pytest.raises(CodeExecutionError) as raised:
        interp.execute("leaky()")
    assert str(raised.value) == "HostCallError: tool.leaky failed: RuntimeError"
    # a tool's own ValueError stays on the host too (its message may hold host detail);
    # a tool that wants the model to read a message raises rlmbox.ToolError
    with pytest.raises(CodeExecutionError) as raised:
        interp.execute("picky(3)")
    assert str(raised.value) == "HostCallError: tool.picky failed: ValueError"
