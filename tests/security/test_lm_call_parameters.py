"""LM call parameters from the policy and from model code: a sandbox gets at most the cap.

Model code may pass ``max_tokens``, ``temperature``, ``stop`` (and, to ``llm_query``,
``system``); the policy's ``lm_calls`` section caps ``max_tokens`` per function, gives
defaults, and puts its own system prompt first. The host computes the effective
parameters before the policy decides, so the decision, the audit record and the request
the API receives agree. The API is the local Anthropic test double (tests/lm/fake_api.py)
behind the unmodified SDK.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from rlmbox.lm.anthropic import AnthropicLM
from rlmbox.lm.base import CallOptions
from rlmbox.lm.openai_compat import OpenAICompatibleLM
from rlmbox.runtime.recursion import CHILD_TASK
from rlmbox.runtime.rlm_loop import run_rlm
from tests.lm.fake_api import FakeLMServer, serve

from .harness import Runtimes, events, run_json

MODEL = "claude-haiku-4-5"
TRY = """
import json
try:
    print(json.dumps({{"value": {call}}}))
except Exception as exc:
    print(json.dumps({{"error": type(exc).__name__, "message": str(exc)}}))
"""
PERMIT_LM = [{"id": "permit-lm", "effect": "permit", "function": "*_query"},
             {"id": "permit-batched", "effect": "permit", "function": "*_query_batched"}]


@pytest.fixture
def api() -> Iterator[FakeLMServer]:
    yield from serve(f"sk-ant-test-{secrets.token_hex(8)}")


def _lm(api: FakeLMServer) -> AnthropicLM:
    return AnthropicLM(MODEL, api_key=api.key, base_url=api.url)


def _asked(api: FakeLMServer, field: str) -> list[Any]:
    return [seen.body.get(field) for seen in api.seen]


def test_a_sandbox_asking_for_more_than_the_cap_gets_the_cap(runtimes: Runtimes,
                                                             api: FakeLMServer) -> None:
    """max_tokens above the cap (or none: the provider's default is larger) is sent as the
    cap, below it as asked; the rule forbidding more than the cap never fires, because
    the policy decides on the capped value; the record shows it and what was asked."""
    rules = [*PERMIT_LM, {"id": "no-long-answers", "effect": "forbid",
                          "function": "llm_query*", "when": {"max_tokens": {"min": 65}}}]
    rt = runtimes(lm=_lm(api), rules=rules, lm_calls={
        "llm_query": {"max_tokens": 64}, "llm_query_batched": {"max_tokens": 32}})
    with rt.session() as session:
        for call in ("llm_query('a', max_tokens=100000)", "llm_query('b')",
                     "llm_query('c', max_tokens=10)",
                     "llm_query_batched(['d', 'e'], max_tokens=100000)"):
            assert "value" in run_json(session, TRY.format(call=call)), call
    assert sorted(_asked(api, "max_tokens")) == [10, 32, 32, 64, 64]
    calls = events(rt, "host.call", function="llm_query", outcome="ok")
    assert [c["args"]["max_tokens"] for c in calls] == [64, 64, 10]
    assert [c.get("capped") for c in calls] == [{"max_tokens": 100000}, None, None]
    batched = events(rt, "host.call", function="llm_query_batched", outcome="ok")
    assert [c["args"]["max_tokens"] for c in batched] == [32, 32]
    assert events(rt, "policy.decision", decision="deny") == []


def test_the_cap_binds_an_openai_compatible_server_too(runtimes: Runtimes,
                                                      api: FakeLMServer) -> None:
    """The same policy over the openai SDK: the chat completions request carries the cap,
    the policy's stop and temperature, and its system prompt as the first message."""
    lm = OpenAICompatibleLM("local-model", api.url + "/v1", api_key=api.key,
                            allow_unpriced=True)
    rt = runtimes(lm=lm, rules=PERMIT_LM, lm_calls={"llm_query": {
        "max_tokens": 64, "temperature": 0.0, "stop": ["STOP"], "system": "POLICY"}})
    with rt.session() as session:
        assert "value" in run_json(session, TRY.format(
            call="llm_query('a', max_tokens=100000)"))
    [body] = [seen.body for seen in api.seen]
    assert (body["max_tokens"], body["temperature"], body["stop"]) == (64, 0.0, ["STOP"])
    assert body["messages"][0] == {"role": "system", "content": "POLICY"}
    [call] = events(rt, "host.call", function="llm_query", outcome="ok")
    assert (call["args"]["max_tokens"], call["capped"]) == (64, {"max_tokens": 100000})


def test_bad_parameters_are_refused_before_the_api_is_asked(runtimes: Runtimes,
                                                            api: FakeLMServer) -> None:
    """Wrong types and ranges fail in the cell, and the parameters are keyword-only (a
    third positional argument stays an error); a system prompt counts against the prompt
    budget (max_prompt_chars is 10000 here), so it cannot carry a prompt past it."""
    rt = runtimes(lm=_lm(api), rules=PERMIT_LM)
    with rt.session() as session:
        for call, error in [("llm_query('a', max_tokens='lots')", "TypeError"),
                            ("llm_query('a', max_tokens=True)", "TypeError"),
                            ("llm_query('a', max_tokens=0)", "ValueError"),
                            ("llm_query('a', temperature=9)", "ValueError"),
                            ("llm_query('a', stop='END')", "TypeError"),
                            ("llm_query('a', stop=['x'] * 9)", "ValueError"),
                            ("llm_query('a', system=7)", "TypeError"),
                            ("llm_query('a', None, 'by position')", "TypeError"),
                            ("llm_query('a', system='s' * 20000)", "BudgetExceeded")]:
            assert run_json(session, TRY.format(call=call))["error"] == error, call
    assert api.seen == []
    assert len(events(rt, "host.call", function="llm_query", outcome="invalid")) == 8


def test_policy_defaults_and_system_prompt_reach_the_api(runtimes: Runtimes,
                                                         api: FakeLMServer) -> None:
    """The policy's temperature and stop are defaults model code may replace; its system
    prompt always comes first, model code's after it."""
    rt = runtimes(lm=_lm(api), rules=PERMIT_LM, lm_calls={"llm_query": {
        "system": "POLICY RULES", "temperature": 0.0, "stop": ["STOP"]}})
    with rt.session() as session:
        run_json(session, TRY.format(call="llm_query('a')"))
        run_json(session, TRY.format(
            call="llm_query('b', system='MINE', temperature=0.5, stop=['X'])"))
    systems = [[block["text"] for block in body] for body in _asked(api, "system")]
    assert systems == [["POLICY RULES"], ["POLICY RULES\n\nMINE"]]
    assert _asked(api, "temperature") == [0.0, 0.5]
    assert _asked(api, "stop_sequences") == [["STOP"], ["X"]]
    calls = events(rt, "host.call", function="llm_query", outcome="ok")
    assert [c["args"]["temperature"] for c in calls] == [0.0, 0.5]
    assert [c["args"]["system"] for c in calls] == [{"chars": 12}, {"chars": 18}]


def _rlm_answer(prompt: str) -> str:
    """The root writes a cell that starts a child; the child answers at once."""
    if CHILD_TASK in prompt:
        return "FINAL(child-done)"
    if "[cell]" in prompt:
        return "FINAL(root-done)"
    return "```repl\nprint(rlm_query('sub', max_tokens=99999, temperature=0.25))\n```"


def test_the_root_loop_and_rlm_query_children_are_capped(runtimes: Runtimes,
                                                         api: FakeLMServer) -> None:
    """root_lm caps every root-loop completion (a child's too), rlm_query caps its
    children's; the caller's larger max_tokens becomes the cap; root_lm's system prompt
    comes before the RLM's instructions."""
    api.answer = _rlm_answer
    rt = runtimes(lm=_lm(api), rules=PERMIT_LM,
                  budgets={"tree": {"calls": 50, "max_depth": 1, "max_prompt_chars": 10000}},
                  lm_calls={"root_lm": {"max_tokens": 300, "system": "OPERATOR"},
                            "rlm_query": {"max_tokens": 40}})
    with rt.session() as session:
        trajectory = run_rlm(session, rt.rlm_lm, "task", context="text",
                             options=CallOptions(max_tokens=100000))
    assert trajectory.answer == "root-done"
    sent = [s.body for s in api.seen if s.path == "/v1/messages"]   # not count_tokens
    child = [body for body in sent if CHILD_TASK in body["system"][0]["text"]]
    root = [body for body in sent if CHILD_TASK not in body["system"][0]["text"]]
    assert [b["max_tokens"] for b in root] == [300, 300]
    assert [(b["max_tokens"], b["temperature"]) for b in child] == [(40, 0.25)]
    assert all(b["system"][0]["text"].startswith("OPERATOR\n\nYou are a Recursive")
               for b in root + child)
    records = events(rt, "host.call", function="root_lm", outcome="ok")
    assert sorted(r["args"]["max_tokens"] for r in records) == [40, 300, 300]
    assert {r["depth"]: r.get("capped") for r in records} == {
        0: {"max_tokens": 100000}, 1: None}   # the child asked for rlm_query's cap, 40
    [spawn] = events(rt, "host.call", function="rlm_query", outcome="ok")
    assert (spawn["args"]["max_tokens"], spawn["capped"]) == (40, {"max_tokens": 99999})
