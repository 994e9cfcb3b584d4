"""``rlmbox policy check|explain|test|schema`` through the real CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlmbox.cli.main import main

POLICY = """name: demo
rules:
  - {id: llm, effect: permit, function: llm_query, when: {model: {in: [small]}}}
  - {id: no-llm, effect: forbid, function: "llm_*"}
  - {id: tool, effect: permit, function: tool.lookup}
budgets:
  functions:
    rlm_query: {calls: 1}
"""


def test_check_reports_every_error_with_line(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("mode: nope\nlimits: {pidz: 1}\n")
    assert main(["policy", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "mode: Input should be 'enforce' or 'audit', got 'nope' (line 1)" in err
    assert "limits: unknown field 'pidz' (did you mean 'pids'?) (line 2)" in err


def test_check_warns_about_unreachable_rules(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(POLICY)
    assert main(["policy", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "rules[0] (llm): unreachable, forbid rule 'no-llm'" in out
    assert "budgets.functions.rlm_query: no rule permits rlm_query" in out
    assert main(["policy", "check", "--strict", str(path)]) == 1


def test_presets_check_clean(capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("strict", "default"):
        assert main(["policy", "check", "--strict", name]) == 0
    assert "warning" not in capsys.readouterr().out


def test_explain_says_what_is_permitted(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "explain", "strict"]) == 0
    out = capsys.readouterr().out
    assert "[permit-llm] permits calls to llm_query when prompt has at most 100000" in out
    assert "Context: gated" in out
    assert "defence in depth" in out


def test_policy_test_cases(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("rules:\n  - {id: llm, effect: permit, function: llm_query, "
                      "when: {model: {in: [small]}}}\n")
    cases = tmp_path / "cases.yaml"
    cases.write_text("""cases:
  - {call: llm_query, args: {model: small, prompt: hi}, expect: permit, rules: [llm]}
  - {call: llm_query, args: {model: big}, expect: deny}
  - {call: context.read, args: {start: 0, end: 5}, expect: deny}
""")
    assert main(["policy", "test", str(policy), str(cases)]) == 0
    assert "3 passed, 0 failed" in capsys.readouterr().out
    cases.write_text("cases:\n  - {call: llm_query, args: {model: big}, expect: permit}\n")
    assert main(["policy", "test", str(policy), str(cases)]) == 1
    assert "FAIL" in capsys.readouterr().out
    cases.write_text("cases:\n  - {call: llm_query, expct: permit}\n")
    assert main(["policy", "test", str(policy), str(cases)]) == 2
    assert "(line 2)" in capsys.readouterr().err


def test_schema_is_json_schema_refusing_unknown_keys(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["additionalProperties"] is False
    assert {"rules", "budgets", "limits", "isolation", "context", "code", "mode"} <= set(
        schema["properties"])


def test_check_suggests_the_field_meant(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text("limits: {memroy_mb: 5}\ncontext: {mode: gated, max_serch_hits: 3}\n")
    assert main(["policy", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "limits: unknown field 'memroy_mb' (did you mean 'memory_mb'?)" in err
    assert "context: unknown field 'max_serch_hits' (did you mean 'max_search_hits'?)" in err


def test_check_shows_the_offending_value(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "value.yaml"
    path.write_text("limits: {pids: many}\n")
    assert main(["policy", "check", str(path)]) == 2
    assert "limits.pids: Input should be a valid integer, got 'many' (line 1)" in \
        capsys.readouterr().err


def test_an_unknown_function_is_an_error(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "fn.yaml"
    path.write_text("rules:\n  - {id: typo, effect: permit, function: llm_qeury}\n")
    assert main(["policy", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "rules[0].function: no host function named 'llm_qeury' (did you mean " \
           "'llm_query'?" in err
    assert "tool.<name>" in err


def test_strict_never_says_ok_when_it_fails(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "warn.yaml"
    path.write_text("mode: audit\nrules:\n  - {id: a, effect: permit, function: llm_query}\n")
    assert main(["policy", "check", "--strict", str(path)]) == 1
    out = capsys.readouterr().out
    assert ": ok" not in out
    assert "FAIL (--strict): 1 warning(s)" in out
