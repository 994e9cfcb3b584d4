"""Budgets bind every call: child root models, tools, context reads, batched forms.

Each case spends a small budget from model code and checks, on the host, that nothing
past it ran: the LM's own record of prompts, the tool's own call count, and the audit log.
"""

from __future__ import annotations

import json
from typing import Any

from rlmbox.lm.anthropic import AnthropicLM
from rlmbox.lm.base import estimate_tokens
from rlmbox.lm.scripted import ScriptedLM
from tests.lm.fake_api import FakeLMServer

from .harness import Runtimes, events, run_json

# A root model that never answers: on its own, each child would run all 8 steps.
THINKING = "```repl\nprint('thinking')\n```"

TRY_CALLS = """
import json
outcomes = []
for i in range({n}):
    try:
        {call}
        outcomes.append("ok")
    except Exception as exc:
        outcomes.append(type(exc).__name__)
print(json.dumps(outcomes))
"""


def permit(*functions: str) -> list[dict[str, Any]]:
    return [{"id": f"permit-{f.replace('*', 'all')}", "effect": "permit", "function": f}
            for f in functions]


def test_child_root_models_cannot_read_past_the_tree_token_budget(runtimes: Runtimes) -> None:
    """rlm_query children's root completions are reserved and committed: with 300 input
    tokens for the tree, six rlm_query calls cannot make the root LM read thousands."""
    lm = ScriptedLM(default=THINKING)
    rt = runtimes(lm=lm, rules=permit("rlm_query", "llm_query"),
                  budgets={"tree": {"calls": 200, "input_tokens": 300, "max_depth": 1}})
    with rt.session() as session:
        outcomes = run_json(session, TRY_CALLS.format(n=6, call="rlm_query('think')"))
    read = [estimate_tokens(p) for p in lm.prompts]
    # usage is known after a completion: the overshoot is at most the last one admitted
    assert sum(read) <= 300 + max(read), (sum(read), read)
    assert "BudgetExceeded" in outcomes
    completions = events(rt, "host.call", function="root_lm", outcome="ok")
    assert len(completions) == len(lm.prompts)
    assert sum(e["tokens_in"] for e in completions) == sum(read)
    assert len(events(rt, "host.call.start", function="root_lm")) == len(lm.prompts)


def test_a_root_turn_counted_over_the_token_budget_is_never_sent(runtimes: Runtimes) -> None:
    """With a provider that counts (Anthropic's count_tokens, played by the local test
    double), an rlm_query child's first root turn, counted at more than the tree's 300
    input tokens, is refused before it is sent: no completion is requested, nothing is
    spent, and the refusal is audited with the budget it would have crossed."""
    api = FakeLMServer("sk-test-budget")
    try:
        lm = AnthropicLM("claude-haiku-4-5", api_key="sk-test-budget", base_url=api.url)
        rt = runtimes(lm=lm, rules=permit("rlm_query"), limits={"cell_timeout_s": 30},
                      budgets={"tree": {"calls": 50, "input_tokens": 300, "max_depth": 1}})
        with rt.session() as session:
            outcomes = run_json(session, TRY_CALLS.format(n=2, call="rlm_query('think')"))
        paths = [seen.path for seen in api.seen]
    finally:
        api.stop()
    assert outcomes == ["BudgetExceeded", "BudgetExceeded"]
    assert paths == ["/v1/messages/count_tokens"] * 2   # never /v1/messages
    refused = events(rt, "limit.exceeded", function="root_lm")
    assert [e["budget"] for e in refused] == ["tree.input_tokens"] * 2
    assert events(rt, "host.call", function="root_lm", outcome="ok") == []


def test_an_llm_query_counted_over_the_token_budget_is_never_sent(runtimes: Runtimes) -> None:
    """The same for sub-calls: ``llm_query`` and each ``llm_query_batched`` item are counted
    (inside the call's own deadline) and refused before any completion is requested when
    the count would cross the tree's input-token budget."""
    api = FakeLMServer("sk-test-budget")
    long_prompt = "word " * 400
    try:
        lm = AnthropicLM("claude-haiku-4-5", api_key="sk-test-budget", base_url=api.url)
        rt = runtimes(lm=lm, rules=permit("llm_query", "llm_query_batched"),
                      limits={"cell_timeout_s": 30},
                      budgets={"tree": {"calls": 50, "input_tokens": 300}})
        with rt.session() as session:
            single = run_json(session, TRY_CALLS.format(
                n=1, call=f"llm_query({long_prompt!r})"))
            batched = run_json(session, TRY_CALLS.format(
                n=1, call=f"llm_query_batched([{long_prompt!r}, {long_prompt!r}])"))
        paths = [seen.path for seen in api.seen]
    finally:
        api.stop()
    assert single == ["BudgetExceeded"]
    assert batched == ["ok"]   # a batch returns each item's error in its place
    assert "/v1/messages" not in paths
    assert paths.count("/v1/messages/count_tokens") == 3
    refused = events(rt, "host.call", function="llm_query", outcome="denied")
    assert len(refused) == 1
    assert "input_tokens" in refused[0]["error"]


def test_a_tool_call_cap_refuses_the_third_call(runtimes: Runtimes) -> None:
    """budgets.functions {tool.x: {calls: 2}}: the tool runs twice, the third call is
    refused with BudgetExceeded and the refusal is audited."""
    ran: list[int] = []
    rt = runtimes(rules=permit("tool.x"),
                  budgets={"functions": {"tool.x": {"calls": 2}}})
    with rt.session(tools={"x": lambda: ran.append(1)}) as session:
        outcomes = run_json(session, TRY_CALLS.format(n=4, call="x()"))
    assert outcomes == ["ok", "ok", "BudgetExceeded", "BudgetExceeded"]
    assert len(ran) == 2
    assert [e["budget"] for e in events(rt, "limit.exceeded")] == ["tool.x.calls"] * 2
    assert len(events(rt, "host.call", function="tool.x", outcome="budget_exceeded")) == 2


def test_the_tree_call_cap_covers_context_reads(runtimes: Runtimes) -> None:
    """A gated context's reads are calls of the tree: a cap of 2 admits two searches."""
    rt = runtimes(rules=permit("context.*"), budgets={"tree": {"calls": 2}},
                  context={"mode": "gated"})
    with rt.session(context="abcdef" * 100) as session:
        outcomes = run_json(session, TRY_CALLS.format(n=3, call="context.search('abc', 1)"))
    assert outcomes == ["ok", "ok", "BudgetExceeded"]
    assert [e["budget"] for e in events(rt, "limit.exceeded")] == ["tree.calls"]


def test_a_budget_on_llm_query_covers_llm_query_batched(runtimes: Runtimes) -> None:
    """{llm_query: {calls: 2}} cannot be dodged by asking llm_query_batched for five."""
    lm = ScriptedLM(default="fine")
    rt = runtimes(lm=lm, rules=permit("llm_query", "llm_query_batched"),
                  budgets={"functions": {"llm_query": {"calls": 2}}})
    with rt.session() as session:
        answers = run_json(session, "import json\n"
                           "print(json.dumps(llm_query_batched(['a', 'b', 'c', 'd', 'e'])))")
    assert len(lm.prompts) == 2
    assert sorted(answers) == ["Error: BudgetExceeded: llm_query budget 'calls' exhausted: "
                               "2 of 2 calls used"] * 3 + ["fine"] * 2
    assert json.dumps(answers).count("BudgetExceeded") == 3
