"""End to end through real sandboxes (the process backend): the policy decides real calls."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlmbox.lm.scripted import ScriptedLM
from rlmbox.runtime.runtime import Runtime

MODEL_RULES = [{"id": "small-models-only", "effect": "permit", "function": "llm_query",
                "when": {"model": {"in": ["small"]}}}]

PROBE = """
try:
    llm_query('hi', model='big')
    print('big: allowed')
except PolicyDenied as exc:
    print('big: denied:', exc)
print('small:', llm_query('hi', model='small'))
"""


def events(runtime: Runtime) -> list[dict[str, Any]]:
    assert runtime.audit_path is not None
    runtime.audit.sync()
    path = runtime.audit_path
    log = path if path.is_file() else path / "audit.jsonl"
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


def test_denied_model_is_refused_inside_the_sandbox(
        make_runtime: Callable[..., Runtime]) -> None:
    rt = make_runtime(rules=MODEL_RULES)
    with rt.session() as s:
        r = s.exec(PROBE)
    assert r.status == "ok", r.error
    assert "big: denied:" in r.stdout
    assert "no rule permits" in r.stdout
    assert "small: scripted answer" in r.stdout
    calls = [e for e in events(rt) if e["event"] in ("policy.decision", "host.call")]
    denied = [e for e in calls if e["event"] == "policy.decision"]
    assert [(d["decision"], d["allowed"], d["rule_ids"]) for d in denied] == [
        ("deny", False, [])]
    permitted = [e for e in calls if e["event"] == "host.call" and e["outcome"] == "ok"]
    assert [(p["decision"], p["rule_ids"]) for p in permitted] == [
        ("permit", ["small-models-only"])]


def test_audit_mode_lets_the_same_call_through_and_records_it(
        make_runtime: Callable[..., Runtime]) -> None:
    rt = make_runtime(rules=MODEL_RULES, mode="audit")
    with rt.session() as s:
        r = s.exec(PROBE)
    assert r.status == "ok", r.error
    assert "big: allowed" in r.stdout
    decisions = [e for e in events(rt) if e["event"] == "policy.decision"]
    assert decisions[0]["decision"] == "deny"
    assert decisions[0]["allowed"] is True
    assert decisions[0]["mode"] == "audit"


def test_import_socket_is_rejected_under_strict(tmp_path: Path) -> None:
    with Runtime("strict", lm=ScriptedLM(default="ok"), audit_dir=tmp_path / "audit",
                 pool_size=0) as rt, rt.session() as s:
        rejected = s.exec("x = 1\nimport socket")
        assert rejected.status == "error"
        assert "line 2" in (rejected.error or "")
        assert "import of 'socket' is not allowed" in (rejected.error or "")
        fine = s.exec("import re\nprint(len(re.findall('a', 'banana')))")
        assert (fine.status, fine.stdout) == ("ok", "3\n")
        assert s.exec("print(x)").status == "error"   # the rejected cell never ran
        kinds = [e["event"] for e in events(rt)]
    assert "code.rejected" in kinds


def test_restricted_builtins_survive_between_cells(tmp_path: Path) -> None:
    """Under strict, `open` is absent in every cell, not just the first."""
    with Runtime("strict", lm=ScriptedLM(default="ok"), audit_dir=tmp_path / "audit",
                 pool_size=0) as rt, rt.session() as s:
        results = [s.exec("open('/etc/hostname')") for _ in range(2)]
    for r in results:
        assert r.status == "error"
        assert "NameError" in (r.error or "")


def test_over_quota_context_read_is_denied(make_runtime: Callable[..., Runtime]) -> None:
    rt = make_runtime(context={"mode": "gated", "max_bytes_per_call": 100})
    with rt.session(context="a" * 1000) as s:
        ok = s.exec("print(len(context), context[0:100] == 'a' * 100)")
        over = s.exec("""
try:
    context[0:500]
except PolicyDenied as exc:
    print('denied:', exc)
""")
    assert ok.stdout == "1000 True\n"
    assert "denied:" in over.stdout
    assert "bytes per call" in over.stdout
