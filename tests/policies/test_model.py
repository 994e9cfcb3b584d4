"""Loading policies: presets load, and every malformed-policy class gives a precise error."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlmbox.errors import PolicyError
from rlmbox.policies.model import PRESETS, Policy, load_policy, load_policy_text, policy_from_data
from rlmbox.sandboxes.base import IsolationProperty


def errors_of(text: str) -> list[str]:
    with pytest.raises(PolicyError) as info:
        load_policy_text(text)
    return info.value.errors


@pytest.mark.parametrize("name", PRESETS)
def test_presets_load_and_are_named(name: str) -> None:
    policy = load_policy(name)
    assert policy.name == name
    assert len(policy.sha256) == 64
    assert policy.mode == "enforce"


def test_strict_preset_is_strict() -> None:
    """strict: gated context, restricted code, and the four required isolation properties."""
    policy = load_policy("strict")
    assert policy.context.mode == "gated"
    assert policy.code.mode == "restricted"
    assert "socket" not in policy.code.allowed_imports
    required = {IsolationProperty.NETWORK_NONE, IsolationProperty.FILESYSTEM_PRIVATE,
                IsolationProperty.PIDS_LIMIT, IsolationProperty.MEMORY_LIMIT}
    assert required <= policy.isolation.require
    assert policy.budgets.tree.calls <= load_policy("default").budgets.tree.calls


def test_default_preset_values() -> None:
    policy = load_policy("default")
    assert policy.isolation.backend == "process"
    assert (policy.limits.memory_mb, policy.limits.pids) == (1024, 128)
    assert policy.limits.cell_timeout_s == 60
    assert policy.limits.output_bytes == 1024 * 1024


def test_policy_object_is_returned_as_is() -> None:
    policy = load_policy("dev")
    assert load_policy(policy) is policy


def test_sha256_is_of_source_bytes(tmp_path: Path) -> None:
    import hashlib
    text = b"name: mine\nmode: audit\n"
    path = tmp_path / "p.yaml"
    path.write_bytes(text)
    policy = load_policy(path)
    assert policy.sha256 == hashlib.sha256(text).hexdigest()
    assert load_policy(str(path)).mode == "audit"


def test_sha256_of_object_is_stable_and_content_addressed() -> None:
    a = policy_from_data({"name": "x", "rules": [
        {"id": "r", "effect": "permit", "function": "llm_query"}]})
    b = policy_from_data({"rules": [{"function": "llm_query", "effect": "permit", "id": "r"}],
                          "name": "x"})
    c = policy_from_data({"name": "x"})
    assert a.sha256 == b.sha256 != c.sha256


def test_policy_is_frozen() -> None:
    policy = load_policy("default")
    with pytest.raises(Exception, match="frozen"):
        policy.mode = "audit"


def test_unknown_field_names_path_and_line() -> None:
    text = """name: t
rules:
  - id: a
    effect: permit
    function: llm_query
    when:
      model:
        equals: x
        modle: y
"""
    assert errors_of(text) == ["rules[0].when.model: unknown field 'modle' (line 9)"]


def test_every_error_is_listed_at_once() -> None:
    text = """name: t
limits:
  memory_mb: "12"
  pidz: 3
isolation:
  runtime: runsc
  require: [network_nope]
rules:
  - id: a
    effect: allow
    function: llm_query
"""
    errors = errors_of(text)
    assert len(errors) == 5
    assert "limits.memory_mb: Input should be a valid integer, got '12' (line 3)" in errors
    assert "limits: unknown field 'pidz' (did you mean 'pids'?) (line 4)" in errors
    assert "isolation.runtime: runtime 'runsc' needs backend 'docker' (line 6)" in errors
    assert any(e.startswith("isolation.require[0]:") and e.endswith("(line 7)") for e in errors)
    assert "rules[0].effect: Input should be 'permit' or 'forbid', got 'allow' (line 10)" in errors


def test_unknown_argument_of_builtin_function() -> None:
    text = "rules:\n  - {id: a, effect: permit, function: llm_query, when: {modle: x}}\n"
    [error] = errors_of(text)
    assert error.startswith("rules[0].when: unknown argument 'modle' of llm_query")
    assert error.endswith("(line 2)")


def test_tool_arguments_are_not_checked() -> None:
    policy = load_policy_text(
        "rules:\n  - {id: a, effect: permit, function: tool.mine, when: {anything: 3}}\n")
    assert policy.rules[0].when["anything"].equals == 3


def test_duplicate_rule_id() -> None:
    text = """rules:
  - {id: a, effect: permit, function: llm_query}
  - {id: a, effect: forbid, function: llm_query}
"""
    assert errors_of(text) == ["rules[1].id: duplicate rule id 'a' (line 3)"]


def test_duplicate_yaml_key() -> None:
    assert errors_of("name: a\nmode: audit\nmode: enforce\n") == [
        "mode: duplicate key 'mode' (line 3)"]


def test_yaml_syntax_error_has_line() -> None:
    [error] = errors_of("name: a\nrules: [\n  - x\n")
    assert error.startswith("(top level): YAML syntax:")
    assert "(line " in error


@pytest.mark.parametrize(("text", "expected"), [
    ("- a\n- b\n", "(top level): expected a mapping of sections"),
    ("", "(top level): empty document"),
    ("1: a\n", "(top level): keys must be strings, got tag:yaml.org,2002:int (line 1)"),
    ("mode: block\n", "mode: Input should be 'enforce' or 'audit', got 'block' (line 1)"),
    ("limits: {pids: 0}\n", "limits.pids: Input should be greater than 0 (line 1)"),
    ("limits: {pids: true}\n", "limits.pids: Input should be a valid integer, got True (line 1)"),
    ("limits: {cell_timeout_s: '5'}\n",
     "limits.cell_timeout_s: Input should be a valid number, got '5' (line 1)"),
    ("version: 2\n", "version: Input should be 1, got 2 (line 1)"),
    ("code: {allowed_imports: ['os;x']}\n", None),
    ("rules: [{id: 'a b', effect: permit, function: f}]\n", None),
    ("rules: [{id: a, effect: permit, function: 'f()'}]\n", None),
    ("rules: [{id: a, effect: permit}]\n", "rules[0].function: Field required (line 1)"),
    ("rules: [{id: a, effect: permit, function: f, when: {x: {}}}]\n",
     "rules[0].when.x: condition has no clauses (line 1)"),
    ("rules: [{id: a, effect: permit, function: f, when: {x: {min: 5, max: 1}}}]\n",
     "rules[0].when.x: min is greater than max (line 1)"),
    ("rules: [{id: a, effect: permit, function: f, when: {x: {regex: '('}}}]\n", None),
    ("rules: [{id: a, effect: permit, function: f, when: {x: {regex: '(a+)+'}}}]\n", None),
    ("budgets: {tree: {calls: -1}}\n",
     "budgets.tree.calls: Input should be greater than or equal to 0 (line 1)"),
    ("budgets: {functions: {llm_query: {callz: 1}}}\n",
     "budgets.functions.llm_query: unknown field 'callz' (did you mean 'calls'?) (line 1)"),
    ("a: &x [1]\n<<: *x\n", "(top level): merge keys ('<<') are not supported (line 2)"),
])
def test_malformed_policy_classes(text: str, expected: str | None) -> None:
    """Each malformed class is refused; where the text is fixed, it is asserted exactly."""
    errors = errors_of(text)
    assert errors
    if expected is not None:
        assert expected in errors
    for error in errors:
        assert ": " in error


def test_billion_laughs_is_refused_quickly() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1},"
              f" *a{i-1}, *a{i-1}, *a{i-1}]" for i in range(1, 9)]
    errors = errors_of("\n".join(lines) + "\n")
    assert any("too many nodes" in e for e in errors)


def test_control_characters_are_refused() -> None:
    """Found by fuzz_policy_loader: the YAML reader's error is translated, not leaked."""
    errors = errors_of("name: a\x00b\n")
    assert errors[0].startswith("(top level): ")


def test_huge_source_is_refused() -> None:
    errors = errors_of("description: '" + "x" * (2 * 1024 * 1024) + "'\n")
    assert "source too large" in errors[0]


def test_non_utf8_is_refused() -> None:
    with pytest.raises(PolicyError) as info:
        load_policy_text(b"name: \xff\xfe\n")
    assert "not UTF-8" in info.value.errors[0]


def test_unknown_preset_or_missing_file() -> None:
    with pytest.raises(PolicyError, match="cannot read policy 'nosuch'"):
        load_policy("nosuch")


def test_python_tags_are_not_constructed() -> None:
    """A YAML python/object tag never runs code: safe loading refuses it."""
    errors = errors_of("name: !!python/object/apply:os.system ['true']\n")
    assert errors == ["name: unsupported YAML tag "
                      "tag:yaml.org,2002:python/object/apply:os.system (line 1)"]
    errors = errors_of("name: !!python/name:os.system x\n")
    assert errors[0].startswith("(top level): YAML syntax")


def test_failed_load_yields_no_policy() -> None:
    """A policy that fails to load leaves nothing half-built: the call raises, returns nothing."""
    result: list[Policy] = []
    with pytest.raises(PolicyError):
        result.append(load_policy_text("mode: audit\nlimits: {pids: -1}\n"))
    assert result == []
