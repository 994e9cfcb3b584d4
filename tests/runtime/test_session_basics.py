"""A session is a persistent REPL with answers, host calls and honest results."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from rlmbox.audit.verify import verify_log
from rlmbox.errors import SessionClosed
from rlmbox.lm.scripted import ScriptedLM
from rlmbox.runtime.runtime import Runtime


def test_namespace_persists_across_cells(runtime: Runtime) -> None:
    with runtime.session() as s:
        assert s.exec("x = 40").status == "ok"
        r = s.exec("x += 2\nprint(x)")
    assert r.status == "ok"
    assert r.stdout == "42\n"


def test_final_returns_the_answer(runtime: Runtime) -> None:
    with runtime.session() as s:
        r = s.exec("FINAL({'n': 3})")
    assert r.has_answer
    assert r.answer == {"n": 3}


def test_final_var_returns_a_variable(runtime: Runtime) -> None:
    with runtime.session() as s:
        s.exec("result = [1, 2, 3]")
        r = s.exec("FINAL_VAR('result')")
    assert r.answer == [1, 2, 3]


def test_final_var_of_a_missing_name_is_an_error(runtime: Runtime) -> None:
    with runtime.session() as s:
        r = s.exec("FINAL_VAR('nope')")
    assert r.status == "error"
    assert "NameError" in (r.error or "")
    assert not r.has_answer


def test_rlms_answer_dict_is_an_answer_only_when_ready(runtime: Runtime) -> None:
    with runtime.session() as s:
        draft = s.exec("answer = {'content': 'draft', 'ready': False}")
        final = s.exec("answer = {'content': 'done', 'ready': True}")
    assert not draft.has_answer
    assert final.has_answer
    assert final.answer == "done"


def test_show_vars_lists_user_variables_only(runtime: Runtime) -> None:
    """SHOW_VARS returns rlms' string: the model's variables, not answer or injected names."""
    with runtime.session(context="abc") as s:
        s.exec("alpha = 1\nbeta = 'b'\nanswer = {'content': '', 'ready': False}")
        r = s.exec("print(SHOW_VARS())")
    assert r.stdout.strip() == "Available variables: {'alpha': 'int', 'beta': 'str'}"


def test_unanswerable_value_comes_back_as_its_repr(runtime: Runtime) -> None:
    with runtime.session() as s:
        r = s.exec("FINAL({1, 2})")
    assert r.answer == "{1, 2}"


def test_error_traceback_shows_only_model_frames(runtime: Runtime) -> None:
    with runtime.session() as s:
        r = s.exec("def f():\n    1/0\nf()")
    assert r.status == "error"
    assert "ZeroDivisionError" in (r.error or "")
    assert "<cell>" in (r.error or "")
    assert "agent.py" not in (r.error or "")


def test_syntax_error_is_a_cell_error_and_session_survives(runtime: Runtime) -> None:
    with runtime.session() as s:
        bad = s.exec("def (:")
        good = s.exec("print('still here')")
    assert bad.status == "error"
    assert "SyntaxError" in (bad.error or "")
    assert good.stdout == "still here\n"


def test_sys_exit_does_not_end_the_session(runtime: Runtime) -> None:
    with runtime.session() as s:
        r = s.exec("import sys; sys.exit(3)")
        after = s.exec("print('alive')")
    assert r.status == "error"
    assert "SystemExit" in (r.error or "")
    assert after.stdout == "alive\n"


def test_injected_names_are_restored_after_each_cell(runtime: Runtime) -> None:
    with runtime.session(context="the context") as s:
        s.exec("context = 'overwritten'; llm_query = None; FINAL = None")
        r = s.exec("print(context); print(llm_query('q')); FINAL(1)")
    assert r.stdout == "the context\nscripted answer\n"
    assert r.answer == 1


@pytest.mark.parametrize(("value", "expected"), [
    ("plain text " * 3, "plain text plain text plain text "),
    ({"doc": [1, 2]}, {"doc": [1, 2]}),
    ([{"a": 1}, "b"], [{"a": 1}, "b"]),
])
def test_context_kinds_arrive_intact(runtime: Runtime, value: object, expected: object) -> None:
    with runtime.session(context=value) as s:
        r = s.exec("FINAL(context)")
    assert r.answer == expected


def test_context_that_is_not_json_is_refused(runtime: Runtime) -> None:
    with pytest.raises(TypeError):
        runtime.session(context=3.5)


def test_llm_query_and_batched_use_the_scripted_provider(
        make_runtime: Callable[..., Runtime]) -> None:
    lm = ScriptedLM(lambda prompt: prompt.upper())
    rt = make_runtime(lm=lm)
    with rt.session() as s:
        r = s.exec("print(llm_query('abc'))\nprint(llm_query_batched(['x', 'y']))")
    assert r.stdout == "ABC\n['X', 'Y']\n"
    assert sorted(lm.prompts) == ["abc", "x", "y"]
    assert r.host_calls == 2


def test_registered_tool_is_callable_and_policy_gated(
        make_runtime: Callable[..., Runtime]) -> None:
    rt = make_runtime()
    with rt.session(tools={"add": lambda a, b: a + b}) as s:
        r = s.exec("print(add(2, b=3))")
    assert r.stdout == "5\n"
    locked = make_runtime(rules=[{"id": "llm", "effect": "permit", "function": "llm_query"}])
    with locked.session(tools={"add": lambda a, b: a + b}) as s:
        denied = s.exec("try:\n    add(1, 2)\nexcept PolicyDenied as e:\n    print('denied', e)")
    assert denied.stdout.startswith("denied policy denied tool.add")


def test_bad_arguments_to_a_host_function_raise_type_error(runtime: Runtime) -> None:
    with runtime.session() as s:
        r = s.exec("llm_query('a', 'b', 'c')")
        r2 = s.exec("llm_query(prompt=b'bytes')")
    assert "TypeError" in (r.error or "")
    assert "TypeError" in (r2.error or "")


def test_closed_session_refuses_reuse(runtime: Runtime) -> None:
    s = runtime.session()
    s.close()
    with pytest.raises(SessionClosed):
        s.exec("1")


def test_audit_log_records_the_session_and_verifies(runtime: Runtime, tmp_path: Path) -> None:
    with runtime.session(context="ctx") as s:
        s.exec("llm_query('hello')")
    runtime.close()
    report = verify_log(tmp_path / "audit-0")
    assert report.ok, report.reason
    events = [json.loads(line) for line in (tmp_path / "audit-0" / "audit.jsonl").read_text(
        ).splitlines()]
    kinds = [e["event"] for e in events]
    for expected in ("policy.load", "session.create", "session.ready", "code.exec",
                     "host.call", "cell.result", "session.end"):
        assert expected in kinds
    call = next(e for e in events if e["event"] == "host.call")
    assert call["function"] == "llm_query"
    assert call["rule_ids"] == ["permit-llm"]
    assert call["outcome"] == "ok"
    assert "budget_before" in call
    assert call["budget_after"]["tree"]["calls"] == 1


def test_each_root_session_has_its_own_budget(make_runtime: Callable[..., Runtime]) -> None:
    rt = make_runtime(budgets={"tree": {"calls": 2}})
    with rt.session() as first:
        spent = first.exec("llm_query('a'); llm_query('b')\n"
                           "try:\n    llm_query('c')\nexcept BudgetExceeded:\n    print('spent')")
    with rt.session() as second:
        fresh = second.exec("print(llm_query('d'))")
    assert spent.stdout == "spent\n"
    assert fresh.stdout == "scripted answer\n"


def _child_rlm(prompt: str) -> str:
    """A scripted root model for child RLMs: recurse once more, report what happened."""
    return ("```repl\ntry:\n    r = rlm_query('deeper ' + context)\n"
            "except BudgetExceeded as e:\n    r = 'stopped at ' + context\nFINAL(r)\n```")


def test_rlm_query_runs_a_child_session_within_the_depth_budget(
        make_runtime: Callable[..., Runtime], tmp_path: Path) -> None:
    rt = make_runtime(budgets={"tree": {"max_depth": 2}})
    rt.rlm_lm = ScriptedLM(_child_rlm)
    with rt.session() as s:
        r = s.exec("print(rlm_query('q'))")
    assert r.status == "ok", r.error
    assert r.stdout == "stopped at deeper q\n"   # the depth-2 child was refused a child
    rt.close()
    events = [json.loads(line) for line in (tmp_path / "audit-0" / "audit.jsonl").read_text(
        ).splitlines()]
    created = [e for e in events if e["event"] == "session.create"]
    assert [e["depth"] for e in created] == [0, 1, 2]
    assert created[1]["parent"] == created[0]["session"]
    assert created[2]["parent"] == created[1]["session"]
    denied = [e for e in events if e["event"] == "limit.exceeded"]
    assert any("max_depth" in str(e.get("budget")) for e in denied)
    assert verify_log(tmp_path / "audit-0").ok
