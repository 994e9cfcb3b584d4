"""Conditions by JSON type: a forbid cannot be dodged by a string number, a nested list,
an object, NaN or an empty list; a permit never matches what it cannot compare."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlmbox.errors import PolicyError
from rlmbox.policies.engine import CallRequest, PolicyEngine
from rlmbox.policies.model import policy_from_data

from .strategies import build, cases


def decide(rules: list[dict[str, Any]], **args: Any) -> str:
    return PolicyEngine(build(rules)).decide(CallRequest("tool.pay", args)).effect


PERMIT = {"id": "permit", "effect": "permit", "function": "tool.pay"}
FORBID_BIG = {"id": "big", "effect": "forbid", "function": "tool.pay",
              "when": {"amount": {"min": 1000}}}
FORBID_MODEL = {"id": "no-gpt", "effect": "forbid", "function": "tool.pay",
                "when": {"model": "gpt-4"}}


@pytest.mark.parametrize("amount", ["5000", "500", True, float("nan"), None, {"v": 5000}])
def test_a_forbid_on_a_bound_fires_on_what_it_cannot_compare(amount: Any) -> None:
    """``amount: {min: 1000}`` denies "5000" (and, failing closed, every value it cannot
    compare as a number)."""
    assert decide([PERMIT, FORBID_BIG], amount=amount) == "deny"


@pytest.mark.parametrize(("amount", "effect"), [(999, "permit"), (1000, "deny"),
                                                (1e9, "deny"), (999.5, "permit")])
def test_a_forbid_on_a_bound_compares_numbers(amount: float, effect: str) -> None:
    assert decide([PERMIT, FORBID_BIG], amount=amount) == effect


@pytest.mark.parametrize("model", [[["gpt-4"]], [[["x", ["gpt-4"]]]], {"m": "gpt-4"},
                                   {"gpt-4": 1}, ("x", ["gpt-4"])])
def test_a_forbid_sees_values_nested_at_any_depth(model: Any) -> None:
    assert decide([PERMIT, FORBID_MODEL], model=model) == "deny"


@pytest.mark.parametrize("model", [[["small", "gpt-4"]], [], {}, [[]], 5, "5"])
def test_a_permit_needs_every_nested_value_to_match(model: Any) -> None:
    permit_small = {**PERMIT, "when": {"model": {"in": ["small"]}}}
    assert decide([permit_small], model=model) == "deny"
    assert decide([permit_small], model=[["small"], "small"]) == "permit"


@pytest.mark.parametrize("clause", [{"min_length": 3}, {"max_length": 3}, {"regex": "a.*"}])
def test_string_clauses_on_other_types_deny_both_ways(clause: dict[str, Any]) -> None:
    """A length or regex clause on a number: the permit does not match, the forbid does."""
    permit = {**PERMIT, "when": {"note": clause}}
    forbid = {"id": "f", "effect": "forbid", "function": "tool.pay", "when": {"note": clause}}
    assert decide([permit], note=12345) == "deny"
    assert decide([PERMIT, forbid], note=12345) == "deny"


nestings = st.recursive(st.just(0), lambda inner: st.lists(inner, min_size=1, max_size=3),
                        max_leaves=6)


def _nest(value: Any, shape: Any) -> Any:
    """``value`` placed at every leaf of ``shape`` (a nest of lists)."""
    return [_nest(value, s) for s in shape] if isinstance(shape, list) else value


@settings(max_examples=300, deadline=None)
@given(cases(), nestings)
def test_nesting_a_value_never_turns_a_deny_into_a_permit(
        case: tuple[list[dict[str, Any]], CallRequest], shape: Any) -> None:
    """Wrapping every argument in lists keeps each denial a denial."""
    rules, request = case
    engine = PolicyEngine(build(rules))
    if engine.decide(request).effect != "deny":
        return
    nested = CallRequest(request.function, {k: _nest(v, shape) for k, v in request.args.items()})
    assert engine.decide(nested).effect == "deny"


@pytest.mark.parametrize(("functions", "message"), [
    ({"llm_qeury": {"calls": 1}}, "no host function named 'llm_qeury'"),
    ({"tool.x": {"input_tokens": 5}}, "'tool.x' runs no LM"),
    ({"context.read": {"cost_usd": 1.0}}, "'context.read' runs no LM"),
    ({"rlm_query": {"output_tokens": 5}}, "'rlm_query' runs no LM"),
    ({"tool.x": {"max_prompt_chars": 5}}, "'tool.x' takes no prompt"),
])
def test_the_loader_refuses_budget_keys_that_could_never_bind(functions: dict[str, Any],
                                                              message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        policy_from_data({"budgets": {"functions": functions}})
    assert any(message in error for error in caught.value.errors), caught.value.errors


def test_the_loader_accepts_budget_keys_that_bind() -> None:
    policy = policy_from_data({"budgets": {"functions": {
        "tool.x": {"calls": 2, "max_concurrent": 1}, "context.read": {"calls": 3},
        "llm_query": {"input_tokens": 10, "max_prompt_chars": 9}, "root_lm": {"cost_usd": 1.0},
        "rlm_query": {"calls": 1, "max_depth": 1, "max_prompt_chars": 100}}}})
    assert set(policy.budgets.functions) == {"tool.x", "context.read", "llm_query",
                                             "root_lm", "rlm_query"}
