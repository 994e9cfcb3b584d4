"""rlms' own seams reach the rlmbox adapter: an LM injected where rlms' tests inject it,
multi-turn persistent mode, ``rlm_query`` through rlms' sub-call, ``subcall_fn`` and its
concurrency cap, and the policy deciding every sub-call."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest.mock import Mock, patch

import pytest
import rlm.core.rlm as rlm_core
import yaml
from rlm.core.types import ModelUsageSummary, RLMChatCompletion, UsageSummary

from rlmbox.adapters.rlms import RlmboxREPL, RlmboxRLM
from rlmbox.audit.log import AuditLog
from rlmbox.audit.verify import verify_log
from tests.adapters.conftest import records


def final(content: str) -> str:
    return f"```repl\nanswer['content'] = {content!r}\nanswer['ready'] = True\n```"


def scripted_lm(responses: list[str]) -> Mock:
    """A client in rlms' shape whose completions follow a script."""
    usage = UsageSummary(model_usage_summaries={"scripted": ModelUsageSummary(
        total_calls=1, total_input_tokens=10, total_output_tokens=5)})
    lm = Mock()
    lm.model_name = "scripted"
    lm.completion.side_effect = list(responses)
    lm.get_usage_summary.return_value = usage
    lm.get_last_usage.return_value = usage
    return lm


@pytest.fixture
def audit(tmp_path: Path) -> Iterator[AuditLog]:
    log = AuditLog(tmp_path / "audit")
    yield log
    log.close()


def completion(text: str) -> RLMChatCompletion:
    return RLMChatCompletion(root_model="sub", prompt="p", response=text,
                             usage_summary=UsageSummary(model_usage_summaries={}),
                             execution_time=0.0)


def test_an_lm_patched_into_rlms_reaches_rlmbox_rlm(
        policy_file: Callable[..., Path], audit: AuditLog) -> None:
    """rlms' way of injecting a client (patching rlm.core.rlm.get_client) is honoured."""
    lm = scripted_lm(["```repl\nprint(len(context))\n```", final("done")])
    with patch.object(rlm_core, "get_client", return_value=lm):
        rlm = RlmboxRLM(backend="openai", backend_kwargs={"model_name": "scripted"},
                        environment_kwargs={"policy": policy_file(), "audit": audit})
        result = rlm.completion("twelve chars")
    assert result.response == "done"
    assert lm.completion.call_count == 2
    assert "12" in str(lm.completion.call_args_list[1])   # the cell's output came back


def test_multi_turn_persistent_mode_keeps_one_sandbox(
        policy_file: Callable[..., Path], audit: AuditLog, tmp_path: Path) -> None:
    """persistent=True: contexts and histories accumulate as context_N / history_N in the
    same sandbox, variables survive turns, and a turn is not ended by the last turn's
    still-ready answer."""
    lm = scripted_lm(["```repl\ncomputed = 42 * 2\n```", final("84")])
    with patch.object(rlm_core, "get_client", return_value=lm), RlmboxRLM(
            backend="openai", backend_kwargs={"model_name": "scripted"}, persistent=True,
            environment_kwargs={"policy": policy_file(), "audit": audit}) as rlm:
        assert rlm.completion("first document").response == "84"
        first = rlm._persistent_env
        lm.completion.side_effect = [
            "```repl\nprint(computed + 10, context_1, context, len(history))\n```",
            final("94")]
        assert rlm.completion("second document").response == "94"
        env = rlm._persistent_env
        assert env is first
        assert isinstance(env, RlmboxREPL)
        assert (env.get_context_count(), env.get_history_count()) == (2, 2)
        assert env.locals["context_0"] == env.locals["context"] == "first document"
        assert env.locals["context_1"] == "second document"
        assert env.locals["history"] == env.locals["history_0"]
        assert env.locals["computed"] == 84
        assert "94 second document first document" in str(lm.completion.call_args_list[-1])
    assert env.session is None   # close() ended the sandbox
    assert dict(env.locals) == {}
    created = [e for e in records(tmp_path / "audit") if e["event"] == "session.create"]
    assert len(created) == 1


def test_rlm_query_runs_a_child_rlmbox_rlm_in_its_own_sandbox(
        policy_file: Callable[..., Path], audit: AuditLog, tmp_path: Path) -> None:
    """max_depth=2: rlms' _subcall makes the child an RlmboxRLM, not a plain rlm.RLM."""
    lm = scripted_lm(["```repl\nsub = rlm_query('inner task')\nprint(sub)\n```",
                      final("from the child"),           # the child's turn
                      "```repl\nanswer['content'] = sub\nanswer['ready'] = True\n```"])
    with patch.object(rlm_core, "get_client", return_value=lm):
        rlm = RlmboxRLM(backend="openai", backend_kwargs={"model_name": "scripted"},
                        max_depth=2, environment_kwargs={"policy": policy_file(), "audit": audit})
        result = rlm.completion("outer context")
    assert result.response == "from the child"
    created = [e for e in records(tmp_path / "audit") if e["event"] == "session.create"]
    assert len(created) == 2     # the parent's sandbox and the child's
    calls = [e for e in records(tmp_path / "audit")
             if e["event"] == "host.call" and e.get("function") == "rlm_query"]
    assert len(calls) == 1


def test_subcall_fn_is_capped_reported_and_its_errors_read_as_in_rlms(
        policy_file: Callable[..., Path], audit: AuditLog) -> None:
    active, peak, lock = [0], [0], threading.Lock()

    def subcall(prompt: str, model: str | None) -> RLMChatCompletion:
        if prompt == "fail":
            raise RuntimeError("boom")
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.2)
        with lock:
            active[0] -= 1
        return completion(prompt.upper())

    env = RlmboxREPL(policy=policy_file(), audit=audit, subcall_fn=subcall,
                     max_concurrent_subcalls=2)
    try:
        batched = env.execute_code("print(rlm_query_batched(['a', 'b', 'c', 'd']))")
        failed = env.execute_code("print(rlm_query('fail'))")
    finally:
        env.cleanup()
    assert batched.stdout == "['A', 'B', 'C', 'D']\n"
    assert peak[0] == 2
    assert sorted(c.response for c in batched.rlm_calls) == ["A", "B", "C", "D"]
    assert failed.stdout == "Error: RLM query failed - boom\n"


def test_a_denied_rlm_query_never_reaches_subcall_fn(
        policy_file: Callable[..., Path], audit: AuditLog) -> None:
    called: list[str] = []

    def subcall(prompt: str, model: str | None) -> RLMChatCompletion:
        called.append(prompt)
        return completion("x")

    policy = policy_file()
    data = yaml.safe_load(policy.read_text())
    data["rules"].append({"id": "no-recursion", "effect": "forbid", "function": "rlm_query"})
    policy.write_text(yaml.safe_dump(data))
    env = RlmboxREPL(policy=policy, audit=audit, subcall_fn=subcall)
    try:
        result = env.execute_code("rlm_query('escape')")
    finally:
        env.cleanup()
    assert "PolicyDenied" in result.stderr
    assert called == []


def test_a_child_rlm_writes_to_its_parents_audit_log(
        policy_file: Callable[..., Path], tmp_path: Path) -> None:
    """With audit_dir (not an open log), the child RLM does not open a second writer on
    the same directory (which is refused): it shares the parent's, one verifiable chain."""
    lm = scripted_lm(["```repl\nsub = rlm_query('inner task')\n```", final("from the child"),
                      "```repl\nanswer['content'] = sub\nanswer['ready'] = True\n```"])
    with patch.object(rlm_core, "get_client", return_value=lm):
        rlm = RlmboxRLM(backend="openai", backend_kwargs={"model_name": "scripted"},
                        max_depth=2, environment_kwargs={"policy": policy_file(),
                                                         "audit_dir": tmp_path / "audit"})
        result = rlm.completion("outer context")
    assert result.response == "from the child"
    created = [e for e in records(tmp_path / "audit") if e["event"] == "session.create"]
    assert len(created) == 2
    assert verify_log(tmp_path / "audit").ok
