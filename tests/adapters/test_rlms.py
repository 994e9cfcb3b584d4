"""The rlms adapter: rlms' RLM runs its REPL in rlmbox, its LM calls brokered by the host."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rlm.clients.openai import OpenAIClient
from rlm.core.lm_handler import LMHandler
from rlm.environments.local_repl import LocalREPL

from rlmbox.adapters.rlms import RlmboxREPL, RlmboxRLM, stop_handler
from rlmbox.audit.log import AuditLog
from rlmbox.audit.verify import verify_log
from rlmbox.errors import SessionKilled
from tests.adapters.conftest import FakeOpenAI, Messages, body, records

CONTEXT = "filler line\n" * 200 + "The magic word is swordfish.\n"
FIRST_CELL = ('print(len(context))\n'
              'sub = llm_query("What is the magic word in: " + context[-40:])\n'
              'print("sub:", sub)')
FINAL_CELL = 'answer["content"] = sub\nanswer["ready"] = True'


def scripted(messages: Messages) -> str:
    """Root turns write code (inspect, then answer); plain completions answer the riddle."""
    if messages[0].get("role") != "system":
        return "swordfish" if "magic word" in str(messages[0].get("content")) else "no idea"
    seen = any("sub: swordfish" in str(m.get("content")) for m in messages)
    cell = FINAL_CELL if seen else FIRST_CELL
    return f"Let me look.\n```repl\n{cell}\n```"


@pytest.fixture
def server(fake_openai: Callable[[Callable[[Messages], str]], FakeOpenAI]) -> FakeOpenAI:
    return fake_openai(scripted)


@pytest.fixture
def handler(server: FakeOpenAI) -> Iterator[LMHandler]:
    lm = LMHandler(OpenAIClient(api_key="test-key", model_name="fake", base_url=server.base_url))
    lm.start()
    yield lm
    stop_handler(lm)


@pytest.fixture
def env_factory(policy_file: Callable[..., Path], tmp_path: Path
                ) -> Iterator[Callable[..., RlmboxREPL]]:
    """Environments sharing one audit log (as an application running many would)."""
    made: list[RlmboxREPL] = []
    log = AuditLog(tmp_path / "audit")

    def make(policy: Path | None = None, **kwargs: object) -> RlmboxREPL:
        env = RlmboxREPL(policy=policy or policy_file(), audit=log,
                         **kwargs)  # type: ignore[arg-type]
        made.append(env)
        return env

    yield make
    for env in made:
        env.cleanup()
    log.close()


def test_a_full_rlm_completion_answers_from_the_sandbox(
        server: FakeOpenAI, policy_file: Callable[..., Path], tmp_path: Path) -> None:
    audit = tmp_path / "audit"
    rlm = RlmboxRLM(backend="openai",
                    backend_kwargs={"model_name": "fake", "base_url": server.base_url,
                                    "api_key": "test-key"},
                    environment_kwargs={"policy": policy_file(), "audit_dir": audit},
                    max_iterations=4)
    result = rlm.completion(CONTEXT, root_prompt="What is the magic word?")

    assert result.response == "swordfish"
    assert server.sub_prompts() == ["What is the magic word in: " + CONTEXT[-40:]]
    # the model saw its cell's output and, as with rlms' own REPL, the variables it made
    feedback = str(server.requests[-1])
    assert "sub: swordfish" in feedback
    assert "REPL variables:" in feedback
    assert "'sub'" in feedback
    events = records(audit)
    cells = [body(audit, e, "code") for e in events if e["event"] == "code.exec"]
    assert FIRST_CELL in cells
    assert FINAL_CELL in cells
    calls = [e for e in events if e["event"] == "host.call" and e["function"] == "llm_query"]
    assert len(calls) == 1
    assert calls[0]["outcome"] == "ok"
    assert body(audit, calls[0], "completion") == "swordfish"
    assert verify_log(audit).ok


def test_cells_read_as_in_rlms_own_repl(env_factory: Callable[..., RlmboxREPL]) -> None:
    """The same cells give the same stdout, stderr, final answer and JSON locals as
    LocalREPL; a ready answer is reported by the cell that set it, not by later ones."""
    cells = ["x = 41\nprint(x + 1)", "print('a'); 1/0", "undefined_name",
             "print(llm_query('hi'))", "print(type(context).__name__, len(context))",
             "answer['content'] = 'done'\nanswer['ready'] = True",
             "y = (1, [2])", "answer = {'content': 'again', 'ready': True}"]
    native = LocalREPL(context_payload="abc")
    sandboxed = env_factory(context_payload="abc")
    try:
        for code in cells:
            want, got = native.execute_code(code), sandboxed.execute_code(code)
            assert (got.stdout, got.stderr, got.final_answer) == (
                want.stdout, want.stderr, want.final_answer), code
            # LocalREPL's own context loader leaves its file handle ``f`` in its namespace
            assert got.locals == {k: v for k, v in want.locals.items() if k != "f"}, code
    finally:
        native.cleanup()
    shown = sandboxed.execute_code("print(SHOW_VARS())").stdout
    assert shown.startswith("Available variables: {")
    assert "'x': 'int'" in shown
    assert "answer" not in shown
    assert "llm_query" not in shown


def test_llm_query_reaches_the_handler_but_the_sandbox_cannot(
        env_factory: Callable[..., RlmboxREPL], handler: LMHandler,
        server: FakeOpenAI) -> None:
    """The handler's socket is reachable from rlms' own REPL, not from the sandbox; the
    sandbox's llm_query still gets through, brokered by the host."""
    probe = ("import socket\ntry:\n"
             f"    socket.create_connection(('127.0.0.1', {handler.port}), timeout=2).close()\n"
             "    print('connected')\nexcept OSError as exc:\n    print('refused')\n")
    native = LocalREPL()
    try:
        assert native.execute_code(probe).stdout == "connected\n"   # the probe can succeed
    finally:
        native.cleanup()
    env = env_factory(lm_handler_address=handler.address)
    result = env.execute_code(probe + "print(llm_query('the magic word?'))")
    assert result.stdout == "refused\nswordfish\n"
    assert [call.response for call in result.rlm_calls] == ["swordfish"]
    assert server.sub_prompts() == ["the magic word?"]


def test_batched_queries_go_through_the_handler(
        env_factory: Callable[..., RlmboxREPL], handler: LMHandler,
        server: FakeOpenAI) -> None:
    env = env_factory(lm_handler_address=handler.address)
    result = env.execute_code("print(llm_query_batched(['magic word 1', 'other']))")
    assert result.stdout == "['swordfish', 'no idea']\n"
    assert sorted(server.sub_prompts()) == ["magic word 1", "other"]


def test_a_denied_llm_query_never_reaches_the_handler(
        env_factory: Callable[..., RlmboxREPL], handler: LMHandler, server: FakeOpenAI,
        policy_file: Callable[..., Path], tmp_path: Path) -> None:
    env = env_factory(policy_file(rules=[{"id": "permit-context", "effect": "permit",
                                          "function": "context.*"}]),
                      lm_handler_address=handler.address)
    result = env.execute_code("llm_query('the magic word?')")
    assert result.stderr.startswith("\nPolicyDenied: policy denied llm_query")
    assert server.sub_prompts() == []
    denied = [e for e in records(tmp_path / "audit")
              if e["event"] == "host.call" and e.get("decision") == "deny"]
    assert [e["function"] for e in denied] == ["llm_query"]


def test_a_killed_sandbox_ends_the_environment(env_factory: Callable[..., RlmboxREPL]) -> None:
    env = env_factory()
    result = env.execute_code("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    assert "SessionKilled" in result.stderr
    with pytest.raises(SessionKilled):
        env.execute_code("print(1)")


def test_custom_tools_run_on_the_host_under_the_policy(
        env_factory: Callable[..., RlmboxREPL], policy_file: Callable[..., Path]) -> None:
    seen: list[str] = []

    def lookup(key: str) -> str:
        seen.append(key)
        return key.upper()

    tools = {"lookup": {"tool": lookup, "description": "upper-cases"}, "LIMIT": 3}
    env = env_factory(custom_tools=tools)
    result = env.execute_code("print(lookup('abc'), LIMIT)")
    assert result.stdout == "ABC 3\n"
    assert seen == ["abc"]
    locked = env_factory(policy_file(rules=[]), custom_tools=tools)
    denied = locked.execute_code("lookup('xyz')")
    assert "PolicyDenied" in denied.stderr
    assert seen == ["abc"]


def test_tools_that_cannot_cross_or_shadow_are_refused(
        env_factory: Callable[..., RlmboxREPL]) -> None:
    with pytest.raises(TypeError, match="must be JSON"):
        env_factory(custom_tools={"handle": object()})
    with pytest.raises(ValueError, match="reserved"):
        env_factory(custom_tools={"context": "override"})


def test_rlmbox_rlm_refuses_other_environments() -> None:
    with pytest.raises(ValueError, match="rlmbox"):
        RlmboxRLM(backend="openai", environment="local")


def test_rlm_query_without_subcall_fn_is_a_plain_llm_query(
        env_factory: Callable[..., RlmboxREPL], handler: LMHandler, server: FakeOpenAI) -> None:
    """As in rlms' REPL: with no sub-call function, rlm_query falls back to llm_query."""
    env = env_factory(lm_handler_address=handler.address)
    result = env.execute_code("print(rlm_query('What is the magic word in: swordfish'))")
    assert result.stdout == "swordfish\n"
    assert server.sub_prompts() == ["What is the magic word in: swordfish"]
    assert [call.response for call in result.rlm_calls] == ["swordfish"]
