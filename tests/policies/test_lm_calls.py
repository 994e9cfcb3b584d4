"""The ``lm_calls`` section: LM call parameters per function, each key validated on load.

Enforcement of every key it accepts is proven against the SDK test double in
tests/security/test_lm_call_parameters.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rlmbox.cli.main import main as rlmbox_main
from rlmbox.errors import PolicyError
from rlmbox.policies.model import load_policy_text
from rlmbox.runtime.runtime import Runtime


def errors_of(text: str) -> list[str]:
    with pytest.raises(PolicyError) as info:
        load_policy_text(text)
    return info.value.errors


def test_every_lm_function_takes_its_settings() -> None:
    policy = load_policy_text("""
lm_calls:
  llm_query: {system: "Be brief.", max_tokens: 256, temperature: 0.0, stop: ["END"]}
  llm_query_batched: {max_tokens: 128}
  rlm_query: {max_tokens: 512, temperature: 0.5}
  rlm_query_batched: {stop: ["DONE"]}
  root_lm: {system: "Operator rules.", max_tokens: 2048}
""")
    assert policy.lm_calls["llm_query"].max_tokens == 256
    assert policy.lm_calls["llm_query"].stop == ("END",)
    assert policy.lm_calls["root_lm"].system == "Operator rules."
    assert "lm_calls" not in load_policy_text("name: plain").model_dump(exclude_defaults=True)


def test_a_function_that_runs_no_lm_is_refused_with_its_path() -> None:
    [error] = errors_of("lm_calls:\n  context.read: {max_tokens: 10}\n")
    assert error.startswith("lm_calls: ")
    assert "'context.read' runs no LM call" in error
    assert "llm_query" in error


def test_a_misspelled_function_is_refused_with_a_suggestion() -> None:
    [error] = errors_of("lm_calls:\n  llm_querry: {max_tokens: 10}\n")
    assert "'llm_querry'" in error
    assert "did you mean 'llm_query'" in error


def test_a_misspelled_key_is_refused_with_a_suggestion() -> None:
    [error] = errors_of("lm_calls:\n  llm_query:\n    max_token: 10\n")
    assert error == ("lm_calls.llm_query: unknown field 'max_token' "
                     "(did you mean 'max_tokens'?) (line 3)")


@pytest.mark.parametrize(("setting", "expected"), [
    ("max_tokens: 0", "greater than 0"),
    ("max_tokens: true", "valid integer"),
    ("temperature: 2.5", "less than or equal to 2"),
    ("temperature: '0.1'", "valid number"),
    ("stop: ['" + "x" * 257 + "']", "at most 256 characters"),
    ("stop: [a, b, c, d, e, f, g, h, i]", "at most 8 items"),
    ("stop: ['']", "at least 1 character"),
])
def test_out_of_range_values_are_refused(setting: str, expected: str) -> None:
    [error] = errors_of(f"lm_calls:\n  llm_query:\n    {setting}\n")
    assert error.startswith("lm_calls.llm_query.")
    assert expected in error


def test_rlm_query_takes_no_system_prompt() -> None:
    """A child RLM's system prompt is its instructions, with root_lm's ``system`` before
    them: a ``system`` on rlm_query could never bind, so it is refused."""
    [error] = errors_of("lm_calls:\n  rlm_query: {system: hi}\n")
    assert "rlm_query" in error
    assert "root_lm" in error


def test_a_frontend_subcall_cannot_take_rlm_query_settings(tmp_path: Path) -> None:
    """A frontend's own sub-call (rlms' subcall_fn) runs outside rlmbox's root loop, so
    rlm_query settings could not bind there: such a runtime is refused at construction."""
    def subcall(prompt: str, model: str | None) -> str:
        return "x"

    with Runtime(load_policy_text("lm_calls: {llm_query: {max_tokens: 5}}"), subcall=subcall,
                 audit_dir=tmp_path / "a", pool_size=0):
        pass   # the control: settings the frontend does not bypass are fine
    for name in ("rlm_query", "rlm_query_batched"):
        policy = load_policy_text(f"lm_calls: {{{name}: {{max_tokens: 5}}}}")
        with pytest.raises(PolicyError, match=f"lm_calls.{name}"):
            Runtime(policy, subcall=subcall, audit_dir=tmp_path / name, pool_size=0)


def test_explain_says_what_lm_calls_sets(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("lm_calls: {llm_query: {max_tokens: 64, temperature: 0}, "
                    "root_lm: {system: hello}}\n")
    assert rlmbox_main(["policy", "explain", str(path)]) == 0
    out = capsys.readouterr().out
    assert ("LM calls of llm_query: at most 64 output tokens each (larger asks are cut); "
            "temperature 0 unless the caller names one") in out
    assert "LM calls of root_lm: a 5-character system prompt first" in out
