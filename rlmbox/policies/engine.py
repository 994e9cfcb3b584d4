"""Decisions: default deny, a matching forbid beats every permit, order never matters.

The engine is a pure function of (policy, request). Rules are indexed by function name at
first use, so a decision costs a dictionary lookup plus the conditions of the few rules
that name that function.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from rlmbox.errors import IsolationUnavailable
from rlmbox.policies.conditions import Condition
from rlmbox.policies.model import Policy, Rule
from rlmbox.sandboxes.base import IsolationProperty

Effect = Literal["permit", "deny"]
_CACHE_LIMIT = 4096   # function names come from sandboxes; do not let them grow the cache


@dataclass(frozen=True)
class CallRequest:
    """One host call to decide. ``args`` maps parameter names to bound values."""

    function: str
    args: Mapping[str, Any] = field(default_factory=dict)
    session_id: str = ""
    depth: int = 0


@dataclass(frozen=True)
class Decision:
    """The outcome of one request; ``allowed`` is what the caller must obey."""

    effect: Effect
    allowed: bool
    rule_ids: tuple[str, ...]
    reason: str
    mode: Literal["enforce", "audit"]
    function: str = ""


def function_pattern(pattern: str) -> re.Pattern[str]:
    """A rule's ``function`` as a regex: ``*`` matches any run of characters."""
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")))


@dataclass(frozen=True)
class _CompiledRule:
    id: str
    forbid: bool
    function: re.Pattern[str]
    when: tuple[tuple[str, Condition], ...]

    def matches(self, args: Mapping[str, Any]) -> bool:
        # Doubt resolves toward deny: a permit needs every scalar inside the value to
        # match, a forbid fires if any does; an absent argument matches nothing.
        check = any if self.forbid else all
        for name, condition in self.when:
            if name not in args:
                return False
            if not check(condition.matches(v, unsure=self.forbid)
                         for v in scalars(args[name])):
                return False
        return True


class _Empty:
    """Stands for an empty list or object: equal to nothing, comparable with nothing."""


_EMPTY = _Empty()


def scalars(value: Any) -> Iterator[Any]:
    """The scalars a condition is checked against: the value itself, or every scalar
    nested in its lists and objects (keys included), however deep; an empty container
    yields one placeholder that no clause can compare."""
    if not isinstance(value, list | tuple | dict):
        yield value
        return
    found = False
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
        else:
            found = True
            yield item
    if not found:
        yield _EMPTY


def _compile(rule: Rule) -> _CompiledRule:
    return _CompiledRule(rule.id, rule.effect == "forbid", function_pattern(rule.function),
                         tuple(sorted(rule.when.items())))


class PolicyEngine:
    """Decides host calls and session creation for one policy."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._rules = tuple(_compile(rule) for rule in policy.rules)
        self._by_function: dict[str, tuple[tuple[_CompiledRule, ...],
                                           tuple[_CompiledRule, ...]]] = {}

    def _rules_for(self, function: str) -> tuple[tuple[_CompiledRule, ...],
                                                  tuple[_CompiledRule, ...]]:
        cached = self._by_function.get(function)
        if cached is not None:
            return cached
        applicable = [r for r in self._rules if r.function.fullmatch(function)]
        entry = (tuple(r for r in applicable if r.forbid),
                 tuple(r for r in applicable if not r.forbid))
        if len(self._by_function) < _CACHE_LIMIT:
            self._by_function[function] = entry
        return entry

    def decide(self, request: CallRequest) -> Decision:
        """Default deny; every matching forbid is named when denied, every permit when not."""
        forbids, permits = self._rules_for(request.function)
        args = request.args
        denied_by = sorted({r.id for r in forbids if r.matches(args)})
        if denied_by:
            return self._decision("deny", tuple(denied_by),
                                  f"forbidden by rule {', '.join(denied_by)}", request)
        permitted_by = sorted({r.id for r in permits if r.matches(args)})
        if permitted_by:
            return self._decision("permit", tuple(permitted_by),
                                  f"permitted by rule {', '.join(permitted_by)}", request)
        return self._decision("deny", (), "no rule permits", request)

    def _decision(self, effect: Effect, rule_ids: tuple[str, ...], reason: str,
                  request: CallRequest) -> Decision:
        mode = self.policy.mode
        return Decision(effect=effect, allowed=effect == "permit" or mode == "audit",
                        rule_ids=rule_ids, reason=reason, mode=mode,
                        function=request.function)

    def missing_isolation(self, provided: Iterable[IsolationProperty | str]
                          ) -> frozenset[IsolationProperty]:
        """Properties the policy requires that ``provided`` lacks."""
        have = {IsolationProperty(p) for p in provided}
        return frozenset(p for p in self.policy.isolation.require if p not in have)

    def check_isolation(self, backend: str, provided: Iterable[IsolationProperty | str],
                        remedy: str = "") -> None:
        """Refuses session creation when a required property is missing.

        Enforced in audit mode too: audit mode relaxes rules, never the sandbox (fail closed).

        Raises:
            IsolationUnavailable: naming the backend, every missing property and the
                ``remedy`` (how to get them) when there is one.
        """
        missing = self.missing_isolation(provided)
        if missing:
            names = ", ".join(sorted(missing))
            advice = f": {remedy}" if remedy else ""
            raise IsolationUnavailable(
                f"backend '{backend}' cannot provide {names}, which policy "
                f"'{self.policy.name}' requires{advice}")
