"""Tools registered on a running session: callable from the next cell, decided by the
policy like the tools it started with, and named in the audit log."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from rlmbox.errors import PolicyError
from rlmbox.runtime.runtime import Runtime


def test_a_tool_added_to_a_running_session_is_callable_and_keeps_the_namespace(
        make_runtime: Callable[..., Runtime], tmp_path: Path) -> None:
    rt = make_runtime()
    with rt.session(tools={"add": lambda a, b: a + b}) as s:
        s.exec("kept = add(1, 2)")
        s.add_tools({"double": lambda x: 2 * x})
        r = s.exec("print(double(kept), add(kept, 1))")
    assert r.stdout == "6 4\n", r.error
    rt.close()
    events = [json.loads(line) for line in (tmp_path / "audit-0" / "audit.jsonl").read_text(
        ).splitlines()]
    added = [e for e in events if e["event"] == "session.functions_added"]
    assert [e["functions"] for e in added] == [["tool.double"]]
    calls = [e["function"] for e in events if e["event"] == "host.call"]
    assert "tool.double" in calls


def test_a_tool_added_later_is_still_decided_by_the_policy(
        make_runtime: Callable[..., Runtime]) -> None:
    locked = make_runtime(rules=[{"id": "add-only", "effect": "permit", "function": "tool.add"}])
    with locked.session(tools={"add": lambda a, b: a + b}) as s:
        s.add_tools({"secret": lambda: "host secret"})
        r = s.exec("try:\n    secret()\nexcept PolicyDenied as e:\n    print('denied', e)")
    assert r.stdout.startswith("denied policy denied tool.secret"), r.stdout + str(r.error)


def test_adding_a_tool_that_exists_or_is_not_a_name_is_refused(
        make_runtime: Callable[..., Runtime]) -> None:
    rt = make_runtime()
    with rt.session(tools={"add": lambda a, b: a + b}) as s:
        with pytest.raises(PolicyError, match="already"):
            s.add_tools({"add": lambda a, b: a - b})
        with pytest.raises(PolicyError, match="identifier"):
            s.add_tools({"not a name": lambda: 1})
        assert s.exec("print(add(2, 3))").stdout == "5\n"
