"""Hypothesis strategies for rule sets and requests, shared by property and Cedar tests.

Values stay inside the fragment both engines express identically: strings without
newlines, integers, booleans; regexes are literal runs joined by ``.*`` (Cedar ``like``).
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from rlmbox.policies.engine import CallRequest
from rlmbox.policies.model import Policy, policy_from_data

FUNCTIONS = ("tool.a", "tool.b", "tool.read", "tool.search")
PATTERNS = (*FUNCTIONS, "*", "tool.*", "tool.r*", "*a*")
ARGS = ("model", "n", "text")

words = st.text(alphabet="abc", max_size=6)
scalars = st.one_of(words, st.integers(-5, 20), st.booleans())


@st.composite
def regexes(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.text(alphabet="abc", max_size=3), min_size=1, max_size=3))
    return ".*".join(parts)


@st.composite
def conditions(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["equals", "in", "num", "len", "regex", "mixed"]))
    if kind == "equals":
        return {"equals": draw(scalars)}
    if kind == "in":
        return {"in": draw(st.lists(scalars, min_size=1, max_size=4))}
    if kind == "num":
        low = draw(st.integers(-5, 20))
        return {"min": low, "max": low + draw(st.integers(0, 10))}
    if kind == "len":
        low = draw(st.integers(0, 6))
        return {"min_length": low, "max_length": low + draw(st.integers(0, 4))}
    if kind == "regex":
        return {"regex": draw(regexes())}
    return {"in": draw(st.lists(words, min_size=1, max_size=3)), "max_length": 3}


@st.composite
def rule_dicts(draw: st.DrawFn) -> dict[str, Any]:
    when = draw(st.dictionaries(st.sampled_from(ARGS), conditions(), max_size=2))
    return {"effect": draw(st.sampled_from(["permit", "forbid"])),
            "function": draw(st.sampled_from(PATTERNS)), "when": when}


def with_ids(rules: list[dict[str, Any]], prefix: str = "r") -> list[dict[str, Any]]:
    return [{"id": f"{prefix}{i}", **rule} for i, rule in enumerate(rules)]


def build(rules: list[dict[str, Any]], mode: str = "enforce") -> Policy:
    return policy_from_data({"name": "gen", "mode": mode, "rules": rules})


@st.composite
def requests(draw: st.DrawFn) -> CallRequest:
    args = draw(st.dictionaries(st.sampled_from(ARGS), scalars, max_size=3))
    return CallRequest(function=draw(st.sampled_from(FUNCTIONS)), args=args)


rule_sets = st.lists(rule_dicts(), max_size=6).map(with_ids)


def _constants(rules: list[dict[str, Any]]) -> list[Any]:
    """Values that sit on the edges of the generated conditions."""
    out: list[Any] = []
    for rule in rules:
        for cond in rule["when"].values():
            out += [cond[k] for k in ("equals", "min", "max") if k in cond]
            out += list(cond.get("in", []))
            out += ["a" * cond[k] for k in ("min_length", "max_length") if k in cond]
            if "regex" in cond:
                out.append(cond["regex"].replace(".*", ""))
                out.append(cond["regex"].replace(".*", "b"))
    return out


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[dict[str, Any]], CallRequest]:
    """A rule set and a request whose values often hit the rules' boundaries."""
    rules = draw(rule_sets)
    edges = _constants(rules)
    values = st.one_of(st.sampled_from(edges), st.sampled_from(edges), scalars) if edges \
        else scalars
    args = {arg: draw(values) for arg in ARGS if draw(st.integers(0, 4))}  # absent 1 in 5
    return rules, CallRequest(function=draw(st.sampled_from(FUNCTIONS)), args=args)
