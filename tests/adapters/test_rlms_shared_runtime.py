"""Pooled rlms environments borrow the process's shared runtime: the next completion's
REPL starts warm, yet each REPL gets a fresh sandbox, its own ledger, LM and sub-call, and
closing the shared runtimes kills every warm sandbox."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rlm.clients.base_lm import BaseLM
from rlm.core.lm_handler import LMHandler
from rlm.core.types import ModelUsageSummary, RLMChatCompletion, UsageSummary

from rlmbox.adapters.rlms import RlmboxREPL, stop_handler
from rlmbox.audit.log import AuditLog
from rlmbox.runtime.runtime import Runtime
from rlmbox.runtime.session import Session
from rlmbox.runtime.shared import close_shared_runtimes
from tests.adapters.conftest import records

WAIT_S = 60.0


@pytest.fixture
def audit(tmp_path: Path) -> Iterator[AuditLog]:
    log = AuditLog(tmp_path / "audit")
    yield log
    close_shared_runtimes()
    log.close()


class FixedLM(BaseLM):  # type: ignore[misc]  # rlm ships no type information
    """An rlms client that answers the same text to every prompt."""

    def __init__(self, text: str) -> None:
        super().__init__(model_name="fixed")
        self.text = text

    def completion(self, prompt: Any) -> str:
        return self.text

    async def acompletion(self, prompt: Any) -> str:
        return self.text

    def get_usage_summary(self) -> UsageSummary:
        return UsageSummary(model_usage_summaries={})

    def get_last_usage(self) -> ModelUsageSummary:
        return ModelUsageSummary(total_calls=1, total_input_tokens=1, total_output_tokens=1)


def answering(text: str) -> Iterator[LMHandler]:
    """An rlms LM handler whose client answers ``text`` to every prompt."""
    handler = LMHandler(FixedLM(text))
    handler.start()
    yield handler
    stop_handler(handler)


@pytest.fixture
def handler_a() -> Iterator[LMHandler]:
    yield from answering("from handler A")


@pytest.fixture
def handler_b() -> Iterator[LMHandler]:
    yield from answering("from handler B")


def shared(env: RlmboxREPL) -> Runtime:
    runtime = env.runtime
    assert isinstance(runtime, Runtime)
    return runtime


def live(env: RlmboxREPL) -> Session:
    session = env.session
    assert isinstance(session, Session)
    return session


def sandbox_id(env: RlmboxREPL, audit_dir: Path) -> tuple[str, bool]:
    """The sandbox id and warmth that the environment's session.create recorded."""
    session = env.session
    assert session is not None
    created = [e for e in records(audit_dir)
               if e["event"] == "session.create" and e["session"] == session.id]
    return str(created[0]["sandbox"]["id"]), bool(created[0]["sandbox"]["warm"])


def bwrap_children() -> set[int]:
    """This process's bwrap children (the process backend's sandboxes)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        if ppid == os.getpid() and name == "bwrap":
            found.add(int(entry))
    return found


def test_the_next_completions_repl_starts_warm_in_a_fresh_sandbox(
        policy_file: Callable[..., Path], audit: AuditLog, tmp_path: Path) -> None:
    """The second REPL takes a warm sandbox from the first one's pool: a new sandbox, a
    new ledger, none of the first one's variables or files."""
    policy = policy_file()
    first = RlmboxREPL(policy=policy, audit=audit, pool_size=1)
    first.execute_code("leaked = 'secret'\nopen('/tmp/leaked', 'w').write('secret')")
    first_sandbox, _ = sandbox_id(first, tmp_path / "audit")
    first_ledger = live(first).ledger
    first.cleanup()
    pool = shared(first).pool()
    assert pool is not None
    assert pool.wait_full(WAIT_S)

    second = RlmboxREPL(policy=policy, audit=audit, pool_size=1)
    try:
        assert second.runtime is first.runtime
        second_sandbox, warm = sandbox_id(second, tmp_path / "audit")
        assert warm
        assert second_sandbox != first_sandbox
        assert live(second).ledger is not first_ledger
        seen = second.execute_code(
            "import os\nprint('leaked' in globals(), os.path.exists('/tmp/leaked'))")
        assert seen.stdout == "False False\n"
    finally:
        second.cleanup()


def test_repls_on_one_shared_runtime_keep_their_own_lm_and_subcall(
        policy_file: Callable[..., Path], audit: AuditLog, handler_a: LMHandler,
        handler_b: LMHandler) -> None:
    def subcall(text: str) -> Callable[[str, str | None], RLMChatCompletion]:
        def call(prompt: str, model: str | None) -> RLMChatCompletion:
            return RLMChatCompletion(root_model="fixed", prompt=prompt, response=text,
                                     usage_summary=UsageSummary(model_usage_summaries={}),
                                     execution_time=0.0)
        return call

    policy = policy_file()
    a = RlmboxREPL(lm_handler_address=handler_a.address, policy=policy, audit=audit,
                   pool_size=1, subcall_fn=subcall("sub A"))
    b = RlmboxREPL(lm_handler_address=handler_b.address, policy=policy, audit=audit,
                   pool_size=1, subcall_fn=subcall("sub B"))
    try:
        assert a.runtime is b.runtime
        cell = "print(llm_query('hi'), '|', rlm_query('task'))"
        ran = a.execute_code(cell)
        assert ran.stdout == "from handler A | sub A\n", ran.stderr
        assert b.execute_code(cell).stdout == "from handler B | sub B\n"
    finally:
        a.cleanup()
        b.cleanup()


def test_closing_the_shared_runtimes_kills_every_warm_sandbox(
        policy_file: Callable[..., Path], audit: AuditLog) -> None:
    env = RlmboxREPL(policy=policy_file(), audit=audit, pool_size=2)
    env.cleanup()
    pool = shared(env).pool()
    assert pool is not None
    assert pool.wait_full(WAIT_S)
    assert len(bwrap_children()) == 2
    close_shared_runtimes()
    assert shared(env).closed
    assert pool.available == 0
    assert bwrap_children() == set()
    again = RlmboxREPL(policy=policy_file(), audit=audit, pool_size=2)
    try:
        assert again.runtime is not env.runtime
    finally:
        again.cleanup()
