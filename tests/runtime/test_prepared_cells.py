"""Cells named at session start are compiled by the sandbox ahead (issue 16: rlms setup).

``Runtime.session(prepare=[source])`` has the agent compile ``source`` once it has replied to
``init``, while the host still records the session's start; a cell with exactly that source
then runs the compiled code instead of compiling it on the cell's path. Only compiling
happens ahead: the cell runs, is decided and is audited when it is sent, as any other.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rlmbox.policies.model import load_policy
from rlmbox.runtime.agent_init import agent_config
from rlmbox.runtime.runtime import Runtime

# slow to compile (~0.1 s here), quick to run: what the cell's wall time shows is the compile
SLOW_TO_COMPILE = "".join(f"v{i} = [i for i in range({i % 3})]\n" for i in range(1500))


def _exec_seconds(runtime: Runtime, code: str, prepare: tuple[str, ...]) -> float:
    with runtime.session(prepare=prepare) as session:
        time.sleep(2.0)   # ample for the ahead compile (when there is one) to be done
        started = time.perf_counter()
        result = session.exec(code)
        elapsed = time.perf_counter() - started
    assert result.status == "ok", result.error
    return elapsed


def test_a_prepared_cell_is_not_compiled_on_its_path(
        make_runtime: Callable[..., Runtime]) -> None:
    runtime = make_runtime()
    cold = _exec_seconds(runtime, SLOW_TO_COMPILE, ())
    ahead = _exec_seconds(runtime, SLOW_TO_COMPILE, (SLOW_TO_COMPILE,))
    assert ahead < cold / 2, f"prepared {ahead * 1e3:.1f} ms, not prepared {cold * 1e3:.1f} ms"


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
