"""Runtime(tracing=provider): the tree of spans is the tree of sessions, one trace per
RLM tree, with decisions, rules, tokens and cost on the spans and no code or output."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from rlmbox.audit.reader import iter_records
from rlmbox.lm.scripted import ScriptedLM
from rlmbox.runtime.runtime import Runtime
from tests.conftest import write_policy
from tests.observe.priced_lm import PricedLM

PRINTED_TEXT = "output-that-must-not-be-a-span-attribute"
CHILD_RLM = ("```repl\nprint('" + PRINTED_TEXT + "')\n"
             "r = rlm_query('deeper ' + context) if context.count('deeper') < 1 "
             "else llm_query(context)\nFINAL(r)\n```")


@pytest.fixture
def exporter() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    yield provider, spans
    provider.shutdown()


def test_the_span_tree_matches_the_session_tree(
        tmp_path: Path, exporter: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    """A root cell calls rlm_query; that child calls rlm_query again; the grandchild calls
    llm_query. Every session span hangs under the rlm_query call span that started it."""
    provider, exported = exporter
    with Runtime(write_policy(tmp_path, budgets={"tree": {"max_depth": 2}}),
                 lm=PricedLM(), rlm_lm=ScriptedLM(lambda _: CHILD_RLM),
                 audit_dir=tmp_path / "audit", pool_size=0, tracing=provider) as rt, \
            rt.session() as s:
        result = s.exec(f"print('{PRINTED_TEXT}')\nprint(rlm_query('q'))")
        assert result.status == "ok", result.error
    spans = list(exported.get_finished_spans())
    records = list(iter_records(tmp_path / "audit"))

    sessions = {str(sp.attributes["rlmbox.session.id"]): sp for sp in spans
                if sp.name == "rlmbox.session" and sp.attributes}
    created = {r["session"]: r for r in records if r["event"] == "session.create"}
    assert set(sessions) == set(created)
    assert len(sessions) == 3
    assert len({sp.context.trace_id for sp in spans}) == 1   # one RLM tree, one trace
    by_id = {sp.context.span_id: sp for sp in spans}
    for session_id, span in sessions.items():
        parent_session = created[session_id]["parent"]
        if parent_session is None:
            assert span.parent is None
            continue
        call = by_id[span.parent.span_id] if span.parent else None
        assert call is not None
        assert call.name == "rlmbox.host_call"
        assert call.attributes is not None
        assert call.attributes["rlmbox.call.function"] == "rlm_query"
        assert call.attributes["rlmbox.call.rule_ids"] == ("permit-rlm",)
        assert _session_of(call, by_id) == parent_session

    lm_calls = [sp for sp in spans if sp.attributes
                and sp.attributes.get("rlmbox.call.function") == "llm_query"]
    assert len(lm_calls) == 1
    attrs = lm_calls[0].attributes
    assert attrs is not None
    assert attrs["rlmbox.call.decision"] == "permit"
    assert (attrs["rlmbox.lm.tokens_in"], attrs["rlmbox.lm.cost_usd"]) == (10, 0.25)
    root = next(sp for sp in sessions.values() if sp.parent is None)
    assert root.attributes is not None
    assert root.attributes["rlmbox.backend"] == "process"
    assert root.attributes["rlmbox.policy.sha256"] == rt.policy.sha256
    cells = [sp for sp in spans if sp.name == "rlmbox.cell"]
    assert cells
    assert all(sp.attributes and len(str(sp.attributes["rlmbox.cell.code_sha256"])) == 64
               for sp in cells)
    everything = json.dumps([dict(sp.attributes or {}) for sp in spans]
                            + [dict(e.attributes or {}) for sp in spans for e in sp.events])
    assert PRINTED_TEXT not in everything
    assert "rlm_query('q')" not in everything


def _session_of(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> str | None:
    """The session span above ``span``: its id."""
    current: ReadableSpan | None = span
    while current is not None and current.name != "rlmbox.session":
        current = by_id.get(current.parent.span_id) if current.parent else None
    if current is None or current.attributes is None:
        return None
    return str(current.attributes["rlmbox.session.id"])


def test_each_batched_child_hangs_under_its_own_call(
        tmp_path: Path, exporter: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    """rlm_query_batched with three prompts: three child sessions, each under a distinct
    call span of the batch, all in the root's trace."""
    provider, exported = exporter
    with Runtime(write_policy(tmp_path, budgets={"tree": {"max_depth": 1}}),
                 lm=PricedLM(), rlm_lm=ScriptedLM(default="```repl\nFINAL(context)\n```"),
                 audit_dir=tmp_path / "audit", pool_size=0, tracing=provider) as rt, \
            rt.session() as s:
        result = s.exec("print(rlm_query_batched(['a', 'b', 'c']))")
        assert result.stdout == "['a', 'b', 'c']\n", result.error
    spans = list(exported.get_finished_spans())
    by_id = {sp.context.span_id: sp for sp in spans}
    children = [sp for sp in spans if sp.name == "rlmbox.session" and sp.parent is not None]
    assert len(children) == 3
    parents = [by_id[sp.parent.span_id] for sp in children if sp.parent]
    assert [p.name for p in parents] == ["rlmbox.host_call"] * 3
    assert all(p.attributes and p.attributes["rlmbox.call.function"] == "rlm_query_batched"
               for p in parents)
    assert len({p.context.span_id for p in parents}) == 3
    assert len({sp.context.trace_id for sp in spans}) == 1
