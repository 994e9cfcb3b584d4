"""dspy.Flex runs its optimizer-authored module in rlmbox, end to end with a scripted LM."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import dspy
import pytest
from dspy.predict.flex import Flex
from dspy.utils import DummyLM

from rlmbox.adapters.dspy import RlmboxInterpreterFactory
from tests.adapters.conftest import records


class Doubler(dspy.Signature):  # type: ignore[misc]  # dspy ships no types
    """Return double the input value."""

    value: int = dspy.InputField()
    result: int = dspy.OutputField()


# optimizer-style glue: a bridged predictor, an import and parsing, all inside the sandbox
MODULE = textwrap.dedent('''
    class DoublerModule(dspy.Module):
        def __init__(self):
            super().__init__()
            self.solve = dspy.ChainOfThought("value: int -> result: str")

        def forward(self, **inputs):
            import os, re
            r = self.solve(value=inputs["value"])
            found = re.search(r"-?\\d+", str(r.result))
            return dspy.Prediction(result=int(found.group()) + len(os.getcwd()) * 0)
''').strip()


@pytest.fixture
def factory(policy_file: Callable[..., Path], tmp_path: Path
            ) -> Iterator[RlmboxInterpreterFactory]:
    with RlmboxInterpreterFactory(policy=policy_file(), audit_dir=tmp_path / "audit") as made:
        yield made


# dspy 3.4's own SandboxLM passes messages= to the LM, which dspy 3.4 itself deprecates
@pytest.mark.filterwarnings("ignore:Passing OpenAI-style message:DeprecationWarning")
def test_flex_forward_runs_in_the_sandbox_with_the_lm_bridged(
        factory: RlmboxInterpreterFactory, tmp_path: Path) -> None:
    lm = DummyLM([{"reasoning": "double of 21 is 42", "result": "the result is 42"}])
    flex = Flex(Doubler, interpreter_factory=factory)
    flex._bind_code(MODULE)
    with dspy.context(lm=lm):
        out = flex(value=21)
    assert isinstance(out, dspy.Prediction)
    assert out.result == 42
    events = records(tmp_path / "audit")
    bridged = [e for e in events if e["event"] == "host.call"
               and e.get("function") == "tool.__dspy_call__"]
    assert len(bridged) == 1     # the predictor call crossed to the host as a decided call
    assert any(e["event"] == "session.create" for e in events)


def test_flex_module_that_reads_a_host_file_sees_the_sandbox(
        factory: RlmboxInterpreterFactory, tmp_path: Path) -> None:
    secret = tmp_path / "host-secret.txt"
    secret.write_text("do not leak")
    module = textwrap.dedent(f'''
        class DoublerModule(dspy.Module):
            def forward(self, **inputs):
                try:
                    with open({str(secret)!r}) as handle:
                        return dspy.Prediction(result=len(handle.read()))
                except OSError:
                    return dspy.Prediction(result=-1)
    ''').strip()
    flex = Flex(Doubler, interpreter_factory=factory)
    flex._bind_code(module)
    with dspy.context(lm=DummyLM([])):
        assert flex(value=1).result == -1
