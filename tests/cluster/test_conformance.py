"""The same cases against the embedded ``Runtime`` and ``RayRuntime``: a session behaves
the same wherever it is placed (state, answers, errors, context, tools, the LM, budgets,
timeouts, closing)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rlmbox.errors import SessionClosed
from rlmbox.lm.scripted import ScriptedLM
from rlmbox.runtime.runtime import Runtime
from tests.cluster.scripts import shout
from tests.conftest import write_policy

Make = Callable[..., Any]


@pytest.fixture(params=["embedded", "ray"])
def make_any(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Make]:
    """Builds a runtime of the parametrized kind under a test policy with overrides."""
    made: list[Any] = []

    def make(**sections: Any) -> Any:
        policy = write_policy(tmp_path, isolation={"backend": "process"}, **sections)
        if request.param == "ray":
            return request.getfixturevalue("make_ray_runtime")(policy)
        rt = Runtime(policy, lm=ScriptedLM(default="scripted answer"), pool_size=0,
                     audit_dir=tmp_path / f"audit-{len(made)}")
        made.append(rt)
        return rt

    yield make
    for rt in made:
        rt.close()


def test_namespace_persists_across_cells(make_any: Make) -> None:
    with make_any().session() as s:
        assert s.exec("x = 40").status == "ok"
        assert s.exec("x += 2\nprint(x)").stdout == "42\n"


def test_final_returns_the_answer(make_any: Make) -> None:
    with make_any().session() as s:
        result = s.exec("FINAL({'n': 3})")
    assert result.has_answer
    assert result.answer == {"n": 3}


def test_an_exception_is_an_error_result(make_any: Make) -> None:
    with make_any().session() as s:
        result = s.exec("1 / 0")
    assert result.status == "error"
    assert "ZeroDivisionError" in (result.error or "")


def test_the_context_is_a_variable(make_any: Make) -> None:
    with make_any().session(context="hello cluster") as s:
        assert s.exec("print(context.upper())").stdout == "HELLO CLUSTER\n"


def test_a_tool_runs_host_side(make_any: Make) -> None:
    with make_any().session(tools={"shout": shout}) as s:
        result = s.exec("print(shout('hi'))")
    assert result.stdout == "HI!\n"
    assert result.host_calls == 1


def test_llm_query_is_brokered_and_metered(make_any: Make) -> None:
    with make_any(budgets={"tree": {"calls": 1}}).session() as s:
        first = s.exec("print(llm_query('q'))")
        second = s.exec("print(llm_query('q'))")
    assert first.stdout == "scripted answer\n"
    assert "BudgetExceeded" in second.stdout + (second.error or "")


def test_a_cell_past_its_timeout_is_interrupted_and_state_kept(make_any: Make) -> None:
    with make_any().session() as s:
        s.exec("kept = 7")
        result = s.exec("import time\ntime.sleep(30)", timeout=1)
        assert result.status == "interrupted"
        assert s.exec("print(kept)").stdout == "7\n"


def test_a_closed_session_refuses_exec(make_any: Make) -> None:
    session = make_any().session()
    session.close()
    with pytest.raises(SessionClosed):
        session.exec("1")


def test_interrupt_from_another_thread_stops_the_running_cell(make_any: Make) -> None:
    with make_any().session() as s:
        s.exec("kept = 7")
        timer = threading.Timer(1.0, s.interrupt)
        timer.start()
        try:
            result = s.exec("import time\ntime.sleep(4)")
        finally:
            timer.join()
        assert result.status == "interrupted"
        assert result.duration_s < 3.5
        assert s.exec("print(kept)").stdout == "7\n"
