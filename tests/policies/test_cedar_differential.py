"""Differential test: generated rule sets decided by rlmbox and by Cedar agree.

Each rule becomes one Cedar policy; the function name and the arguments travel in the
request context. String lengths, which Cedar cannot compute, are passed as derived
``<arg>__len`` attributes; regexes of the form ``lit.*lit`` become ``like "lit*lit"``.
Cedar skips a policy that errors (a type mismatch such as ``"x" >= 3``); rlmbox instead
treats such a value as incomparable: a permit does not match, a forbid does (fail closed).
The translation states that explicitly with derived type flags (``<arg>__num`` for a number,
``<arg>__len`` for a string), guarded so that Cedar never evaluates a mismatched comparison:
a permit clause is ``is-type && compare``, a forbid clause ``!is-type || compare``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings

from rlmbox.policies.engine import CallRequest, PolicyEngine

from .strategies import build, cases

cedarpy = pytest.importorskip("cedarpy")


def cedar_value(value: Any) -> str:
    return json.dumps(value)  # strings, ints and booleans are Cedar literals in JSON form


def typed(is_type: str, compare: str, forbid: bool) -> str:
    """A clause on one JSON type: an incomparable value fails a permit, fires a forbid."""
    return f"(!{is_type} || {compare})" if forbid else f"({is_type} && {compare})"


def cedar_condition(arg: str, cond: dict[str, Any], forbid: bool) -> list[str]:
    ref = f"context.{arg}"
    is_number, is_string = f"context.{arg}__num", f"(context has {arg}__len)"
    clauses = [f"context has {arg}"]
    if "equals" in cond:
        clauses.append(f"{ref} == {cedar_value(cond['equals'])}")
    if "in" in cond:
        clauses.append(f"[{', '.join(cedar_value(v) for v in cond['in'])}].contains({ref})")
    if "min" in cond:
        clauses.append(typed(is_number, f"{ref} >= {cond['min']}", forbid))
    if "max" in cond:
        clauses.append(typed(is_number, f"{ref} <= {cond['max']}", forbid))
    if "min_length" in cond:
        clauses.append(typed(is_string, f"context.{arg}__len >= {cond['min_length']}", forbid))
    if "max_length" in cond:
        clauses.append(typed(is_string, f"context.{arg}__len <= {cond['max_length']}", forbid))
    if "regex" in cond:
        clauses.append(typed(is_string, f'{ref} like "{cond["regex"].replace(".*", "*")}"',
                             forbid))
    return clauses


def to_cedar(rules: list[dict[str, Any]]) -> str:
    policies = []
    for rule in rules:
        clauses = [f'context.function like "{rule["function"]}"']
        for arg, cond in sorted(rule["when"].items()):
            clauses += cedar_condition(arg, cond, rule["effect"] == "forbid")
        effect = "permit" if rule["effect"] == "permit" else "forbid"
        policies.append(
            f"{effect}(principal, action, resource) when {{ {' && '.join(clauses)} }};")
    return "\n".join(policies)


def cedar_context(request: CallRequest) -> dict[str, Any]:
    context: dict[str, Any] = {"function": request.function, **request.args}
    for arg, value in request.args.items():
        context[f"{arg}__num"] = isinstance(value, int) and not isinstance(value, bool)
        if isinstance(value, str):
            context[f"{arg}__len"] = len(value)
    return context


@settings(max_examples=400, deadline=None)
@given(cases())
def test_rlmbox_and_cedar_decide_the_same(case: tuple[list[dict[str, Any]], CallRequest]
                                          ) -> None:
    rules, request = case
    ours = PolicyEngine(build(rules)).decide(request)
    result = cedarpy.is_authorized(
        {"principal": 'Session::"s"', "action": 'Action::"call"',
         "resource": 'Function::"f"', "context": cedar_context(request)},
        to_cedar(rules), [])
    theirs = "permit" if result.allowed else "deny"
    assert ours.effect == theirs, (to_cedar(rules), request, result.diagnostics.errors)
    # Cedar names policies policyN by position; ours are rN by the same position.
    cedar_ids = tuple(sorted(f"r{reason.removeprefix('policy')}"
                             for reason in result.diagnostics.reasons))
    assert ours.rule_ids == cedar_ids
