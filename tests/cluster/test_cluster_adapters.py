"""The rlms and DSPy adapters on a ``RayRuntime``: a real rlms completion and a real
``dspy.RLM`` run whose REPL runs on a cluster node, while rlms' LM handler, DSPy's LMs and
the user's tools stay in the driver. Every call is decided and recorded in the node's log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dspy
from dspy.utils import DummyLM

from rlmbox.adapters.dspy import RlmboxInterpreter, RlmboxInterpreterFactory
from rlmbox.adapters.rlms import RlmboxRLM
from rlmbox.audit.collected import verify_collected
from rlmbox.audit.reader import iter_records
from rlmbox.cluster import RayRuntime
from rlmbox.lm.base import LMProvider
from rlmbox.runtime.contract import RuntimeFactory, RuntimeLike, Subcall
from tests.adapters.conftest import serve_fake_openai, stop_fake_openai
from tests.adapters.test_dspy import action
from tests.adapters.test_rlms import CONTEXT, scripted
from tests.conftest import write_policy


def on_cluster(directory: Path) -> RuntimeFactory:
    """A runtime factory for the adapters: a RayRuntime on the shared test cluster (the
    ``ray_cluster`` fixture), its audit in ``directory/cluster-audit``. Typed, so mypy
    checks that a RayRuntime is what the adapters take."""
    policy = write_policy(directory, isolation={"backend": "process"})

    def make(*, lm: LMProvider, subcall: Subcall | None = None) -> RuntimeLike:
        return RayRuntime(policy, lm=lm, subcall=subcall, audit_dir=directory / "cluster-audit",
                          pool_size=0, admission_timeout_s=30.0)

    return make


def node_records(audit_dir: Path) -> list[dict[str, Any]]:
    """Every record of every node log under ``audit_dir`` (the driver writes none)."""
    return [record for log in sorted((audit_dir / "nodes").iterdir())
            for record in iter_records(log)]


def placed_sessions(audit_dir: Path) -> set[str]:
    return {r["session"] for r in iter_records(audit_dir / "index")
            if r["event"] == "session.place"}


def test_an_rlms_completion_runs_its_repl_on_a_cluster_node(
        ray_cluster: Any, tmp_path: Path) -> None:
    """rlms' LM handler listens on the driver; the node's llm_query reaches it through the
    driver, after the node's policy decided it."""
    server, http = serve_fake_openai(scripted)
    audit = tmp_path / "cluster-audit"
    try:
        rlm = RlmboxRLM(backend="openai",
                        backend_kwargs={"model_name": "fake", "base_url": server.base_url,
                                        "api_key": "test-key"},
                        environment_kwargs={"runtime_factory": on_cluster(tmp_path)},
                        max_iterations=4)
        result = rlm.completion(CONTEXT, root_prompt="What is the magic word?")
    finally:
        stop_fake_openai(http)

    assert result.response == "swordfish"
    assert server.sub_prompts() == ["What is the magic word in: " + CONTEXT[-40:]]
    assert "sub: swordfish" in str(server.requests[-1])
    events = node_records(audit)
    assert {e["session"] for e in events if e["event"] == "session.create"} \
        == placed_sessions(audit)
    cells = [e for e in events if e["event"] == "code.exec"]
    assert cells, "no cell ran on a node"
    calls = [e for e in events if e["event"] == "host.call" and e["function"] == "llm_query"]
    assert [c["outcome"] for c in calls] == ["ok"]
    assert calls[0]["decision"] == "permit"
    assert verify_collected(audit).ok


def test_a_dspy_rlm_run_executes_on_a_cluster_node_with_driver_tools(
        ray_cluster: Any, tmp_path: Path) -> None:
    """DSPy's sub-LM and a tool closing over the driver's state run on the driver; the
    cells, the decisions and the calls are on the node."""
    audit = tmp_path / "cluster-audit"
    looked_up: list[str] = []

    def lookup(key: str) -> str:
        looked_up.append(key)
        return f"value of {key}"

    first = "sub = llm_query('What is the magic word?')\nprint(sub, lookup('k'))"
    root = DummyLM([action(first), action("SUBMIT(answer='swordfish')", "done")])
    sub = DummyLM({"magic word": {"response": "swordfish"}})
    factory = RlmboxInterpreterFactory(runtime_factory=on_cluster(tmp_path))
    with dspy.context(lm=root):
        rlm = dspy.RLM("context, query -> answer", max_iters=4, sub_lm=sub, tools=[lookup],
                       interpreter_factory=factory)
        result = rlm(context="x" * 100, query="What is the magic word?")

    assert result.answer == "swordfish"
    assert "swordfish" in result.trajectory[0]["output"]
    assert "value of k" in result.trajectory[0]["output"]
    assert looked_up == ["k"]
    events = node_records(audit)
    outcomes = {e["function"]: e["outcome"] for e in events if e["event"] == "host.call"}
    assert outcomes == {"llm_query": "ok", "tool.lookup": "ok"}
    assert verify_collected(audit).ok


def test_a_tool_added_to_a_running_dspy_interpreter_runs_on_the_driver(
        ray_cluster: Any, tmp_path: Path) -> None:
    audit = tmp_path / "cluster-audit"
    interp = RlmboxInterpreter(runtime_factory=on_cluster(tmp_path))
    try:
        assert interp.execute("x = 20") is None
        interp.tools["add_one"] = lambda n: n + 1
        assert interp.execute("add_one(x) + 1") == 22
    finally:
        interp.shutdown()
    events = node_records(audit)
    assert [e["functions"] for e in events if e["event"] == "session.functions_added"] \
        == [["tool.add_one"]]
