"""Cells named at session start are compiled by the sandbox ahead (issue 16: rlms setup).

``Runtime.session(prepare=[source])`` has the agent compile ``source`` once it has replied to
``init``, while the host still records the session's start; a cell with exactly that source
then runs the compiled code instead of compiling it on the cell's path. Only compiling
happens ahead: the cell runs, is decided and is audited when it is sent, as any other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rlmbox.policies.model import load_policy
from rlmbox.runtime.agent_init import agent_config
from rlmbox.runtime.runtime import Runtime

# a cell that records the code object it runs as (the module's, the one compiled for it)
RUNS_AS = "import sys\nran_as = sys._getframe().f_code\n" + "".join(
    f"v{i} = [i for i in range({i % 3})]\n" for i in range(300))
# finds the agent's prepared code objects (model code can reach the agent's objects; this
# test only reads them)
KEEP_PREPARED = """import gc
agent = next(o for o in gc.get_objects() if type(o).__name__ == 'Agent')
kept = list(agent._prepared.values())
"""


def test_a_prepared_cell_runs_the_code_compiled_ahead(
        make_runtime: Callable[..., Runtime]) -> None:
    """The code object the cell runs is the one compiled after ``init``: nothing is
    compiled on its path. (A timing comparison here failed under load: speed is measured
    by the benchmarks, not asserted in tests.)"""
    runtime = make_runtime()
    for prepare, expected in (((RUNS_AS,), "1 True"), ((), "0 False")):
        with runtime.session(prepare=prepare) as session:
            assert session.exec(KEEP_PREPARED).status == "ok"
            ran = session.exec(RUNS_AS)
            assert ran.status == "ok", ran.error
            seen = session.exec("print(len(kept), any(ran_as is c for c in kept))")
        assert seen.stdout == f"{expected}\n", (prepare != (), seen)


def test_a_prepared_cell_runs_and_is_audited_as_any_other(
        make_runtime: Callable[..., Runtime]) -> None:
    code = "n = globals().get('n', 0) + 1\nprint(n)"
    runtime = make_runtime()
    with runtime.session(prepare=[code]) as session:
        first, second = session.exec(code), session.exec(code)   # the second compiles anew
    assert (first.stdout, second.stdout) == ("1\n", "2\n")
    assert runtime.audit_path is not None
    records = runtime.audit_path.read_text().splitlines()
    assert sum('"event":"code.exec"' in line for line in records) == 2


def test_nothing_prepared_runs_before_its_cell(make_runtime: Callable[..., Runtime]) -> None:
    with make_runtime().session(prepare=["ran = True"]) as session:
        result = session.exec("print('ran' in globals())")
    assert result.stdout == "False\n"


def test_a_prepared_source_that_does_not_compile_fails_its_cell_as_before(
        make_runtime: Callable[..., Runtime]) -> None:
    runtime = make_runtime()
    with runtime.session() as plain:
        expected = plain.exec("x = (")
    with runtime.session(prepare=["x = ("]) as session:
        result = session.exec("x = (")
    assert result.status == expected.status == "error"
    assert result.error == expected.error
    assert "SyntaxError" in str(result.error)


def test_restricted_code_is_compiled_by_the_host_so_nothing_is_prepared() -> None:
    class NoSandbox:
        def writable_paths(self) -> list[str]:
            return ["/tmp"]

        def environment_path(self) -> None:
            return None

        def count_mapped(self, nbytes: int) -> bool:
            return False

    full = load_policy("default")
    restricted = full.model_copy(update={"code": full.code.model_copy(
        update={"mode": "restricted"})})
    sandbox: Any = NoSandbox()
    assert "prepare" not in agent_config(restricted, sandbox, [], [], ["x = 1"])
    assert agent_config(full, sandbox, [], [], ["x = 1"])["prepare"] == ["x = 1"]
