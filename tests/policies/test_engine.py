"""Decisions: default deny, forbid beats permit, order and duplicates never matter."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlmbox.errors import IsolationUnavailable
from rlmbox.policies.engine import CallRequest, PolicyEngine
from rlmbox.policies.model import load_policy
from rlmbox.sandboxes.base import IsolationProperty

from .strategies import build, cases, requests, rule_dicts, rule_sets, with_ids


def decide(rules: list[dict[str, Any]], function: str, mode: str = "enforce",
           **args: Any) -> Any:
    engine = PolicyEngine(build(with_ids(rules), mode))
    return engine.decide(CallRequest(function=function, args=args, session_id="s", depth=0))


def test_empty_policy_denies_with_reason() -> None:
    d = decide([], "llm_query", prompt="hi")
    assert (d.effect, d.allowed, d.rule_ids, d.reason) == ("deny", False, (), "no rule permits")


def test_permit_names_every_matching_permit() -> None:
    d = decide([{"effect": "permit", "function": "llm_query"},
                {"effect": "permit", "function": "llm_*"},
                {"effect": "permit", "function": "rlm_query"}], "llm_query", prompt="x")
    assert (d.effect, d.allowed, d.rule_ids) == ("permit", True, ("r0", "r1"))


def test_forbid_names_every_matching_forbid() -> None:
    d = decide([{"effect": "permit", "function": "*"},
                {"effect": "forbid", "function": "llm_query", "when": {"model": "big"}},
                {"effect": "forbid", "function": "*", "when": {"model": ["big", "huge"]}}],
               "llm_query", model="big")
    assert (d.effect, d.allowed, d.rule_ids) == ("deny", False, ("r1", "r2"))
    assert d.reason == "forbidden by rule r1, r2"


def test_denied_model_with_allowlist() -> None:
    rules = [{"effect": "permit", "function": "llm_query",
              "when": {"model": {"in": ["small", "medium"]}}}]
    assert decide(rules, "llm_query", model="small", prompt="p").allowed
    assert not decide(rules, "llm_query", model="large", prompt="p").allowed
    assert not decide(rules, "llm_query", prompt="p").allowed  # absent argument: no match


def test_audit_mode_allows_but_records_deny() -> None:
    d = decide([{"effect": "forbid", "function": "llm_query"}], "llm_query", mode="audit")
    assert (d.effect, d.allowed, d.mode, d.rule_ids) == ("deny", True, "audit", ("r0",))


@pytest.mark.parametrize(("cond", "value", "expected"), [
    ({"equals": 1}, 1, True), ({"equals": 1}, True, False), ({"equals": 1}, "1", False),
    ({"equals": None}, None, True), ({"equals": "a"}, None, False),
    ({"in": [1, "a"]}, "a", True), ({"in": [1, "a"]}, 2, False),
    ({"min": 2, "max": 4}, 3, True), ({"min": 2}, 1, False), ({"max": 4}, 4.5, False),
    ({"min": 0}, "5", False), ({"min": 0}, False, False),
    ({"max_length": 3}, "abc", True), ({"max_length": 3}, "abcd", False),
    ({"min_length": 2}, "a", False), ({"max_length": 3}, 12, False),
    ({"regex": "gpt-[0-9]+"}, "gpt-4", True), ({"regex": "gpt-[0-9]+"}, "xgpt-4", False),
    ({"regex": "a.*"}, 3, False),
])
def test_condition_clauses(cond: dict[str, Any], value: Any, expected: bool) -> None:
    rules = [{"effect": "permit", "function": "tool.x", "when": {"x": cond}}]
    assert decide(rules, "tool.x", x=value).allowed is expected


def test_overlong_value_fails_regex_toward_deny() -> None:
    """Too long to match safely: the permit does not match, and the forbid does."""
    long = "a" * 5000
    permit: list[dict[str, Any]] = [
        {"effect": "permit", "function": "tool.x", "when": {"x": {"regex": "a*"}}}]
    assert not decide(permit, "tool.x", x=long).allowed
    forbid: list[dict[str, Any]] = [
        {"effect": "permit", "function": "tool.x"},
        {"effect": "forbid", "function": "tool.x", "when": {"x": {"regex": "b.*"}}}]
    assert not decide(forbid, "tool.x", x=long).allowed
    assert decide(forbid, "tool.x", x="a" * 10).allowed


def test_list_arguments_permit_all_forbid_any() -> None:
    rules = [{"effect": "permit", "function": "llm_query_batched",
              "when": {"prompts": {"max_length": 5}}},
             {"effect": "forbid", "function": "llm_query_batched",
              "when": {"prompts": {"regex": ".*secret.*"}}}]
    assert decide(rules, "llm_query_batched", prompts=["a", "bb"]).allowed
    assert not decide(rules, "llm_query_batched", prompts=["a", "toolong"]).allowed
    d = decide([{**rules[1], "function": "*"}, {"effect": "permit", "function": "*"}],
               "llm_query_batched", prompts=["fine", "my secret"])
    assert d.rule_ids == ("r0",)


def test_function_patterns() -> None:
    rules = [{"effect": "permit", "function": "context.*"}]
    assert decide(rules, "context.read").allowed
    assert not decide(rules, "contextXread").allowed  # '.' is literal, not a regex dot
    assert not decide(rules, "llm_query").allowed


def test_hostile_function_names_do_not_grow_cache() -> None:
    engine = PolicyEngine(load_policy("default"))
    for i in range(5000):
        assert not engine.decide(CallRequest(function=f"fn{i}")).allowed
    assert len(engine._by_function) <= 4096


def test_presets_permit_lm_and_context() -> None:
    for name in ("default", "strict", "dev"):
        engine = PolicyEngine(load_policy(name))
        for fn in ("llm_query", "rlm_query", "context.read", "context.search"):
            args = {"prompt": "hi", "model": None, "pattern": "x", "max_hits": 10}
            assert engine.decide(CallRequest(fn, args)).allowed, (name, fn)
    strict = PolicyEngine(load_policy("strict"))
    d = strict.decide(CallRequest("context.search", {"pattern": "x", "max_hits": 500}))
    assert d.rule_ids == ("bound-search-hits",)
    assert not strict.decide(CallRequest("my_tool", {})).allowed


def test_isolation_requirements_fail_closed() -> None:
    engine = PolicyEngine(load_policy("strict"))
    with pytest.raises(IsolationUnavailable, match=r"filesystem_private, .*pids_limit"):
        engine.check_isolation("process", ["network_none", "memory_limit"])
    with pytest.raises(IsolationUnavailable, match=r"requires: apt-get install bubblewrap$"):
        engine.check_isolation("process", [], "apt-get install bubblewrap")
    engine.check_isolation("process", [str(p) for p in IsolationProperty
                                       if p is not IsolationProperty.USER_SPACE_KERNEL])


# --- properties ---------------------------------------------------------------

@given(rule_sets, requests())
def test_prop_default_deny(rules: list[dict[str, Any]], request: CallRequest) -> None:
    """Without a matching permit, nothing is allowed."""
    forbids_only = [r for r in rules if r["effect"] == "forbid"]
    d = PolicyEngine(build(forbids_only)).decide(request)
    assert not d.allowed
    assert d.effect == "deny"


@given(cases())
def test_prop_forbid_beats_permit(case: tuple[list[dict[str, Any]], CallRequest]) -> None:
    rules, request = case
    engine = PolicyEngine(build(rules))
    d = engine.decide(request)
    matching_forbids = [r["id"] for r in rules if r["effect"] == "forbid"
                        and PolicyEngine(build([r])).decide(request).rule_ids]
    if matching_forbids:
        assert d.effect == "deny"
        assert d.rule_ids == tuple(sorted(matching_forbids))


@given(rule_sets, requests(), st.randoms(use_true_random=False))
def test_prop_order_and_duplicates_do_not_matter(rules: list[dict[str, Any]],
                                                 request: CallRequest, rnd: Any) -> None:
    base = PolicyEngine(build(rules)).decide(request)
    shuffled = list(rules)
    rnd.shuffle(shuffled)
    assert PolicyEngine(build(shuffled)).decide(request) == base
    copies = [{**r, "id": r["id"] + "-dup"} for r in rules if rnd.random() < 0.5]
    duplicated = PolicyEngine(build(shuffled + copies)).decide(request)
    assert duplicated.effect == base.effect
    assert {i.removesuffix("-dup") for i in duplicated.rule_ids} == set(base.rule_ids)


@settings(max_examples=200)
@given(rule_sets, rule_dicts(), requests())
def test_prop_adding_forbid_is_monotone(rules: list[dict[str, Any]], extra: dict[str, Any],
                                        request: CallRequest) -> None:
    before = PolicyEngine(build(rules)).decide(request)
    forbid = {**extra, "effect": "forbid", "id": "extra"}
    after = PolicyEngine(build([*rules, forbid])).decide(request)
    if before.effect == "deny":
        assert after.effect == "deny"


@given(rule_sets, requests())
def test_prop_audit_mode_same_effect_never_blocks(rules: list[dict[str, Any]],
                                                  request: CallRequest) -> None:
    enforce = PolicyEngine(build(rules)).decide(request)
    audit = PolicyEngine(build(rules, "audit")).decide(request)
    assert (audit.effect, audit.rule_ids) == (enforce.effect, enforce.rule_ids)
    assert audit.allowed
    assert enforce.allowed == (enforce.effect == "permit")
