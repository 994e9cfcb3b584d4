"""Review s5a: attacks on host calls whose body runs on the driver (RayRuntime).

Each test performs one attack and asserts the promise the docs make (each was a strict
xfail until its fix landed).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlmbox.audit.collected import node_log_name
from rlmbox.audit.reader import iter_records
from rlmbox.lm.base import Completion, LMRequest, TextSink
from tests.conftest import write_policy

Make = Callable[..., Any]

TREE = {"calls": 500, "input_tokens": 5_000_000, "output_tokens": 500_000, "cost_usd": 20.0,
        "max_depth": 2, "max_concurrent": 16, "max_prompt_chars": 500_000}


def node_records(rt: Any, session: Any) -> list[dict[str, Any]]:
    return list(iter_records(rt.audit_dir / node_log_name(session.node_id)))


class RecordingConversationLM:
    """A driver-side provider that takes whole requests (as the SDK-based ones do) and
    remembers the parameters each request carried."""

    name = "recording"
    model = "recording-model"

    def __init__(self) -> None:
        self.max_tokens: list[int | None] = []

    def complete(self, prompt: str, *, model: str | None = None) -> Completion:
        self.max_tokens.append(None)   # no parameters reach a text-only completion
        return Completion(text="ok", model=model or self.model)

    def respond(self, request: LMRequest, *, model: str | None = None,
                on_text: TextSink | None = None) -> Completion:
        self.max_tokens.append(request.options.max_tokens)
        return Completion(text="ok", model=model or self.model)

    def count_input_tokens(self, request: LMRequest, *,
                           model: str | None = None) -> int | None:
        return None


def test_a_driver_lm_provider_gets_the_max_tokens_the_node_decided(
        make_ray_runtime: Make, tmp_path: Path) -> None:
    """docs/policy-reference.md: the decision, the audit record and the request the API
    receives agree. The node caps max_tokens at 64 and records 64; the provider kept on
    the driver must be asked for 64, not for its own default."""
    lm = RecordingConversationLM()
    policy = write_policy(tmp_path, isolation={"backend": "process"},
                          lm_calls={"llm_query": {"max_tokens": 64}})
    rt = make_ray_runtime(policy, lm=lm)
    with rt.session() as s:
        result = s.exec("print(llm_query('a', max_tokens=100000))")
    assert result.stdout == "ok\n", result
    call, = [r for r in node_records(rt, s)
             if r["event"] == "host.call" and r.get("function") == "llm_query"]
    assert call["args"]["max_tokens"] == 64   # what the node decided and recorded
    assert lm.max_tokens == [64]              # what the driver's provider was asked


class SlowLM:
    """A driver-side provider whose completion ends after the cell's wall time, having
    spent tokens (as an HTTP request the host stopped waiting for still costs)."""

    name = "slow"
    model = "slow-model"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.done = threading.Event()

    def complete(self, prompt: str, *, model: str | None = None) -> Completion:
        time.sleep(self.seconds)
        self.done.set()
        return Completion(text="late", model=model or self.model, input_tokens=1000,
                          output_tokens=500, cost_usd=0.25)


def test_a_driver_lm_completion_abandoned_at_the_wall_time_is_charged_when_it_ends(
        make_ray_runtime: Make, tmp_path: Path) -> None:
    """docs/threat-model.md (host calls and time, 5.): an abandoned call's usage is
    charged when it really ends (host.call.late), so its spending is not lost."""
    lm = SlowLM(3.0)
    policy = write_policy(tmp_path, isolation={"backend": "process"},
                          limits={"cell_timeout_s": 1.0, "interrupt_grace_s": 0.5})
    rt = make_ray_runtime(policy, lm=lm)
    with rt.session() as s:
        result = s.exec("print(llm_query('q'))")
        assert lm.done.wait(10)
        time.sleep(1.0)   # the answer's round trip to the node
    assert result.status in ("timeout", "interrupted", "killed", "error"), result
    late, = [r for r in node_records(rt, s) if r["event"] == "host.call.late"]
    assert late["outcome"] == "ok", late
    assert (late["tokens_in"], late["tokens_out"]) == (1000, 500), late


def test_hung_driver_tools_cannot_pile_up_past_max_concurrent(
        make_ray_runtime: Make, tmp_path: Path) -> None:
    """docs/threat-model.md (host calls and time, 5.) and security.md: an abandoned call
    keeps its max_concurrent slot until it really ends, so a tree parks at most
    max_concurrent hung calls. With max_concurrent 1, a second call while the first still
    runs on the driver must be refused (BudgetExceeded), never started on the driver."""
    release = threading.Event()
    started: list[float] = []

    def hang() -> None:
        started.append(time.monotonic())
        release.wait(60)

    policy = write_policy(tmp_path, isolation={"backend": "process"},
                          budgets={"tree": {**TREE, "max_concurrent": 1}},
                          limits={"tool_timeout_s": 1.0, "cell_timeout_s": 20.0})
    rt = make_ray_runtime(policy)
    try:
        with rt.session(tools={"hang": hang}) as s:
            # the second call comes 8 s after the first was abandoned: past the node's
            # 5 s wait margin, while the first still runs on the driver
            result = s.exec("import time\nfor pause in (8, 0):\n    try:\n        hang()\n"
                            "    except Exception as e:\n        print(type(e).__name__)\n"
                            "    time.sleep(pause)\n")
    finally:
        release.set()
    assert result.status == "ok", result
    assert len(started) == 1, f"{len(started)} hung tools run on the driver at once"
    assert result.stdout == "TimeoutError\nBudgetExceeded\n", result
