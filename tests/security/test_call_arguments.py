"""The policy decides on the arguments the host acts on: defaults bound first, none ignored.

Each attack leaves out or misstates an argument so that the decision and the action
would differ; the LM and the tool record what they were actually asked.
"""

from __future__ import annotations

from typing import Any

from rlmbox.lm.scripted import ScriptedLM

from .harness import Runtimes, events, run_json

TRY = """
import json
try:
    print(json.dumps({{"value": {call}}}))
except Exception as exc:
    print(json.dumps({{"error": type(exc).__name__}}))
"""

FORBID_BIG_MODEL = [
    {"id": "permit-lm", "effect": "permit", "function": "*_query"},
    {"id": "no-big-model", "effect": "forbid", "function": "*_query",
     "when": {"model": "big-model"}},
]


def test_leaving_out_model_does_not_dodge_a_forbid_on_the_default(runtimes: Runtimes
                                                                  ) -> None:
    """The provider's default model is forbidden: llm_query(prompt) without model= is
    decided as a call to that model, and refused before the LM is asked."""
    lm = ScriptedLM(default="answer", model="big-model")
    rt = runtimes(lm=lm, rules=FORBID_BIG_MODEL)
    with rt.session() as session:
        assert run_json(session, TRY.format(call="llm_query('hi')")) == {"error": "PolicyDenied"}
        assert run_json(session, TRY.format(call="llm_query('hi', None)")) == {
            "error": "PolicyDenied"}
    assert lm.prompts == []
    denied = events(rt, "policy.decision", function="llm_query")
    assert [d["rule_ids"] for d in denied] == [["no-big-model"], ["no-big-model"]]


def test_rlm_query_runs_the_model_the_policy_saw(runtimes: Runtimes) -> None:
    """rlm_query's model is decided on and used by the child's root model; leaving it out
    is decided as the root model's default (forbidden here), so no child starts."""
    lm = ScriptedLM(default="FINAL(done)", model="big-model")
    rt = runtimes(lm=lm, rules=FORBID_BIG_MODEL,
                  budgets={"tree": {"calls": 50, "max_depth": 1}})
    with rt.session() as session:
        assert run_json(session, TRY.format(call="rlm_query('x')")) == {"error": "PolicyDenied"}
        assert lm.prompts == []
        assert run_json(session, TRY.format(call="rlm_query('x', model='small-model')")) == {
            "value": "done"}
    root_calls = events(rt, "host.call", function="root_lm", outcome="ok")
    assert [c["model"] for c in root_calls] == ["small-model"]
    assert events(rt, "session.create", depth=1)   # exactly the permitted call spawned


def test_a_tool_default_is_decided_not_dodged(runtimes: Runtimes) -> None:
    """A forbid on a tool argument's default value binds when the argument is left out."""
    paid: list[tuple[int, str]] = []

    def pay(amount: int, currency: str = "XTS") -> str:
        paid.append((amount, currency))
        return "paid"

    rt = runtimes(rules=[
        {"id": "permit-pay", "effect": "permit", "function": "tool.pay"},
        {"id": "no-test-currency", "effect": "forbid", "function": "tool.pay",
         "when": {"currency": "XTS"}}])
    with rt.session(tools={"pay": pay}) as session:
        assert run_json(session, TRY.format(call="pay(5)")) == {"error": "PolicyDenied"}
        assert run_json(session, TRY.format(call="pay(5, 'EUR')")) == {"value": "paid"}
    assert paid == [(5, "EUR")]


def test_a_call_missing_an_argument_is_refused_before_the_decision(runtimes: Runtimes
                                                                   ) -> None:
    """bind refuses a missing required argument: the call is audited as invalid and
    neither decided nor run."""
    ran: list[Any] = []
    rt = runtimes(rules=[{"id": "permit-pay", "effect": "permit", "function": "tool.pay"}])
    with rt.session(tools={"pay": lambda amount, currency: ran.append(1)}) as session:
        assert run_json(session, TRY.format(call="pay(5)")) == {"error": "TypeError"}
    assert ran == []
    assert [e["outcome"] for e in events(rt, "host.call", function="tool.pay")] == ["invalid"]
    assert events(rt, "host.call.start") == []
