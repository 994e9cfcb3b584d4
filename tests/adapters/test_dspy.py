"""The DSPy adapter: dspy.RLM's code runs in rlmbox, its LM and tools brokered by the host."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dspy
import pytest
from dspy.primitives.code_interpreter import (
    CodeExecutionError,
    CodeInterpreter,
    CodeInterpreterError,
    FinalOutput,
)
from dspy.primitives.local_interpreter import LocalInterpreter
from dspy.utils import DummyLM

from rlmbox.adapters._values import INLINE_LIMIT
from rlmbox.adapters.dspy import RlmboxInterpreter, RlmboxInterpreterFactory
from rlmbox.adapters.trailing_value import with_trailing_value
from rlmbox.audit.verify import verify_log
from tests.adapters.conftest import body, records


def action(code: str, reasoning: str = "next step") -> dict[str, str]:
    return {"reasoning": reasoning, "code": f"```python\n{code}\n```"}


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP port on the host that any process outside a network namespace can reach."""
    server = socket.create_server(("127.0.0.1", 0))
    server.listen(8)
    yield server
    server.close()


def probe(port: int) -> str:
    return ("import socket\ntry:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=2).close()\n"
            "    print('connected')\nexcept OSError:\n    print('refused')\n")


def test_a_dspy_rlm_run_executes_in_the_sandbox(
        policy_file: Callable[..., Path], tmp_path: Path, listener: socket.socket) -> None:
    audit = tmp_path / "audit"
    port = listener.getsockname()[1]
    first = (f"{probe(port)}import os\nprint('uid', os.getuid())\n"
             "sub = llm_query('What is the magic word?')\nprint(len(context), sub)")
    root = DummyLM([action(first), action("SUBMIT(answer='swordfish')", "done")])
    sub = DummyLM({"magic word": {"response": "swordfish"}})
    with RlmboxInterpreterFactory(policy=policy_file(), audit_dir=audit) as factory, \
            dspy.context(lm=root):
        rlm = dspy.RLM("context, query -> answer", max_iters=4, sub_lm=sub,
                       interpreter_factory=factory)
        result = rlm(context="x" * 100, query="What is the magic word?")

    assert result.answer == "swordfish"
    output = result.trajectory[0]["output"]
    assert output.startswith("refused\nuid ")
    assert "uid 0\n" not in output
    assert "100 [[ ## response ## ]]\nswordfish" in output
    events = records(audit)
    cells = [body(audit, e, "code") for e in events if e["event"] == "code.exec"]
    # the audit holds the code that ran: the model's, its last expression wrapped for its value
    assert any(cell.endswith(with_trailing_value(first)) for cell in cells)
    assert any(cell.endswith(with_trailing_value("SUBMIT(answer='swordfish')")) for cell in cells)
    calls = [e for e in events if e["event"] == "host.call" and e["function"] == "llm_query"]
    assert [c["outcome"] for c in calls] == ["ok"]
    assert "swordfish" in body(audit, calls[0], "completion")
    assert verify_log(audit).ok


def test_the_probe_reaches_the_host_from_dspys_local_interpreter(
        listener: socket.socket) -> None:
    """Control for the test above: the same probe connects when it is not sandboxed."""
    native = LocalInterpreter()
    try:
        assert native.execute(probe(listener.getsockname()[1])) == "connected"
    finally:
        native.shutdown()


@pytest.mark.parametrize("code", [
    "x = 41\nprint(x + 1)", "1/0", "undefined_name", "print('a')\nprint('b')",
    "y = 1", "SUBMIT(3)", "SUBMIT(1, 2)", "print(q)",
    # a final bare expression is the result (JSON, else its repr), as in DSPy's interpreters
    "q * 2", "print('dropped')\n{'a': [1, 2.5], 'b': None}", "x = [\n 1,\n 2]\nlen(\n  x)  # n",
    "{1, 2}", "float('nan')", "print('kept')", "None", "x = 1; x + 1", "'é' + q"])
def test_results_and_errors_read_as_in_dspys_local_interpreter(
        interpreter: Callable[..., RlmboxInterpreter], code: str) -> None:
    native = LocalInterpreter()
    sandboxed = interpreter()

    def outcome(interp: Any) -> tuple[str, Any]:
        try:
            interp.execute("x = 0", variables={"q": "hi"})
            return ("value", interp.execute(code, variables={"q": "hi"}))
        except (CodeExecutionError, SyntaxError) as exc:
            return (type(exc).__name__, str(exc))

    try:
        assert outcome(sandboxed) == outcome(native)
    finally:
        native.shutdown()


def test_a_syntax_error_is_a_syntax_error(
        interpreter: Callable[..., RlmboxInterpreter]) -> None:
    with pytest.raises(SyntaxError, match="invalid syntax"):
        interpreter().execute("x = = 1")


def test_submit_takes_the_output_fields_exactly(
        interpreter: Callable[..., RlmboxInterpreter]) -> None:
    interp = interpreter(output_fields=[{"name": "answer", "type": "str"}, {"name": "n"}])
    assert interp.execute("SUBMIT('a', 2)") == FinalOutput({"answer": "a", "n": 2})
    assert interp.execute("SUBMIT(n=3, answer='b')\nprint('never')") == FinalOutput(
        {"answer": "b", "n": 3})
    with pytest.raises(CodeExecutionError, match="do not match"):
        interp.execute("SUBMIT(answer='c')")


def test_large_variables_are_staged_once_and_rebound_each_cell(
        interpreter: Callable[..., RlmboxInterpreter], tmp_path: Path) -> None:
    text = "0123456789" * (INLINE_LIMIT // 5)
    interp = interpreter()
    assert interp.execute("print(len(context))", variables={"context": text}) == str(len(text))
    interp.execute("context = 'overwritten'", variables={"context": text})
    assert interp.execute("print(context[:10], len(context))",
                          variables={"context": text}) == f"0123456789 {len(text)}"
    staged = [e for e in records(tmp_path / "audit") if e["event"] == "dspy.variable"]
    assert [(e["name"], e["bytes"]) for e in staged] == [("context", len(text) + 2)]


def test_variables_that_cannot_cross_are_refused(
        interpreter: Callable[..., RlmboxInterpreter]) -> None:
    interp = interpreter()
    with pytest.raises(CodeInterpreterError, match="unsupported value type"):
        interp.execute("pass", variables={"handle": object()})
    with pytest.raises(CodeInterpreterError, match="invalid names"):
        interp.execute("pass", variables={"not a name": 1})


def test_tools_run_on_the_host_only_if_the_policy_permits(
        interpreter: Callable[..., RlmboxInterpreter], policy_file: Callable[..., Path]) -> None:
    seen: list[str] = []

    def lookup(key: str) -> str:
        seen.append(key)
        return key.upper()

    assert interpreter(tools={"lookup": lookup}).execute("print(lookup('abc'))") == "ABC"
    locked = interpreter(policy_file(rules=[]), tools={"lookup": lookup})
    with pytest.raises(CodeExecutionError, match="PolicyDenied"):
        locked.execute("lookup('xyz')")
    assert seen == ["abc"]


def test_dspys_llm_call_budget_still_binds(
        policy_file: Callable[..., Path], tmp_path: Path) -> None:
    cell = "for i in range(3):\n    print(llm_query(f'magic word {i}'))"
    root = DummyLM([action(cell), action("SUBMIT(answer='x')", "done")])
    sub = DummyLM({"magic word": {"response": "swordfish"}})
    with RlmboxInterpreterFactory(policy=policy_file(), audit_dir=tmp_path / "a") as factory, \
            dspy.context(lm=root):
        rlm = dspy.RLM("question -> answer", max_iters=3, max_llm_calls=2, sub_lm=sub,
                       interpreter_factory=factory)
        result = rlm(question="q")
    output = result.trajectory[0]["output"]
    assert output.startswith("[Error] HostCallError: llm_query failed: RuntimeError: "
                             "LLM call limit exceeded")
    assert len(sub.history) == 2


def test_a_killed_sandbox_is_terminal(interpreter: Callable[..., RlmboxInterpreter]) -> None:
    interp = interpreter()
    with pytest.raises(CodeInterpreterError, match="killed"):
        interp.execute("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    with pytest.raises(CodeInterpreterError, match="cannot run code"):
        interp.execute("print(1)")


def test_an_interrupted_cell_keeps_the_namespace(
        interpreter: Callable[..., RlmboxInterpreter], policy_file: Callable[..., Path]) -> None:
    policy = policy_file(limits={**_limits(policy_file), "cell_timeout_s": 1})
    interp = interpreter(policy)
    interp.execute("kept = 7")
    with pytest.raises(CodeExecutionError, match="KeyboardInterrupt"):
        interp.execute("while True:\n    pass")
    assert interp.execute("print(kept)") == "7"


def _limits(policy_file: Callable[..., Path]) -> dict[str, Any]:
    from rlmbox.policies.model import load_policy
    limits: dict[str, Any] = load_policy(policy_file()).limits.model_dump(mode="json")
    return limits


def test_lifecycle_is_enforced(interpreter: Callable[..., RlmboxInterpreter]) -> None:
    interp = interpreter(tools={"a": lambda: 1})
    assert isinstance(interp, CodeInterpreter)
    interp.execute("kept = a()")
    interp.tools["late"] = lambda: 2   # DSPy fills tools on a running interpreter too
    assert interp.execute("kept + late()") == 3
    interp.shutdown()
    interp.shutdown()
    with pytest.raises(CodeInterpreterError, match="shut down"):
        interp.start()
