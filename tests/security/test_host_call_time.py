"""Wall time holds while a host call runs: a hung tool or LM provider cannot hold a cell,
a session or the host past their limits.

Each attack parks a host call (a tool, an LM provider) far beyond the cell's wall time.
The cell must end near its limit with a clear status, the call must be abandoned with
its ledger reservation settled, and the audit log must say so. The hung call is released
at the end of each test, so no thread outlives it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from rlmbox.audit.bodies import BodyStore
from rlmbox.errors import SessionKilled
from rlmbox.lm.base import Completion
from rlmbox.runtime.session import SessionState

from .harness import Runtimes, events, exec_bounded, watched_session

GRACE_S = 1.0          # harness.BASE_LIMITS["interrupt_grace_s"]
SLACK_S = 2.0          # scheduling on a loaded 2-core machine
HANG_S = 60.0
PERMIT_ALL = [{"id": "permit-tools", "effect": "permit", "function": "tool.*"},
              {"id": "permit-llm", "effect": "permit", "function": "llm_query"}]


class HangingLM:
    """An LM provider whose request never comes back until the test releases it."""

    name = "hanging"
    model = "hanging"

    def __init__(self, release: threading.Event) -> None:
        self._release = release
        self.finished = threading.Event()

    def complete(self, prompt: str, *, model: str | None = None) -> Completion:
        self._release.wait(HANG_S)
        self.finished.set()
        return Completion(text="too late", model=model or self.model, input_tokens=7,
                          output_tokens=3)


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Frees every hung call when the test ends, pass or fail."""
    event = threading.Event()
    yield event
    event.set()


def test_a_hung_tool_ends_with_the_cell(runtimes: Runtimes,
                                        release: threading.Event) -> None:
    """A tool that sleeps 60 s in a cell of 2 s: the cell is interrupted at ~2 s, the call
    is audited as abandoned, and the session goes on working."""
    def sleepy() -> str:
        release.wait(HANG_S)
        return "woke"

    rt = runtimes(limits={"cell_timeout_s": 2}, rules=PERMIT_ALL)
    with watched_session(rt, tools={"sleepy": sleepy}) as (session, _):
        started = time.monotonic()
        result = exec_bounded(session, "sleepy()", HANG_S / 2)
        elapsed = time.monotonic() - started
        assert result.status == "interrupted", (result.status, result.error)
        assert elapsed < 2 + GRACE_S + SLACK_S, f"the cell took {elapsed:.1f} s"
        abandoned = events(rt, "host.call", function="tool.sleepy", outcome="abandoned")
        assert len(abandoned) == 1
        assert abandoned[0]["limit"] == "cell_timeout_s"
        assert events(rt, "limit.exceeded", limit="cell_timeout_s")
        assert session.state is SessionState.READY
        assert session.exec("print(6 * 7)").stdout == "42\n"


def test_a_tool_gets_the_policy_timeout(runtimes: Runtimes, release: threading.Event) -> None:
    """``limits.tool_timeout_s``: a tool past it fails in the sandbox with TimeoutError
    while the cell (with time left) runs on."""
    def sleepy() -> str:
        release.wait(HANG_S)
        return "woke"

    rt = runtimes(limits={"cell_timeout_s": 20, "tool_timeout_s": 1}, rules=PERMIT_ALL)
    with watched_session(rt, tools={"sleepy": sleepy}) as (session, _):
        started = time.monotonic()
        result = exec_bounded(session, (
            "try:\n"
            "    sleepy()\n"
            "except TimeoutError as exc:\n"
            "    print('timed out:', exc)\n"), HANG_S / 2)
        elapsed = time.monotonic() - started
        assert result.status == "ok", result.error
        assert result.stdout.startswith("timed out: tool.sleepy"), result.stdout
        assert elapsed < 1 + SLACK_S, f"the call took {elapsed:.1f} s"
        abandoned = events(rt, "host.call", function="tool.sleepy", outcome="abandoned")
        assert [e["limit"] for e in abandoned] == ["tool_timeout_s"]


def test_a_hung_lm_provider_ends_with_the_cell(runtimes: Runtimes,
                                               release: threading.Event) -> None:
    """An LM request that never returns: the cell ends at ~2 s; the reservation is
    committed (the call counts, it may have been billed) and stays in flight until the
    provider really returns, whose late usage is then charged and audited."""
    lm = HangingLM(release)
    rt = runtimes(lm=lm, limits={"cell_timeout_s": 2}, rules=PERMIT_ALL)
    with watched_session(rt) as (session, _):
        started = time.monotonic()
        result = exec_bounded(session, "llm_query('hello')", HANG_S / 2)
        elapsed = time.monotonic() - started
        assert result.status == "interrupted", (result.status, result.error)
        assert elapsed < 2 + GRACE_S + SLACK_S, f"the cell took {elapsed:.1f} s"
        tree = session.ledger.snapshot()["tree"]
        assert (tree["calls"], tree["in_flight"], tree["input_tokens"]) == (1, 1, 0)
        assert session.ledger.open_reservations() == 0   # settled: nothing to refund
        abandoned = events(rt, "host.call", function="llm_query", outcome="abandoned")
        assert len(abandoned) == 1
        release.set()
        assert lm.finished.wait(10)
        deadline = time.monotonic() + 10
        while session.ledger.snapshot()["tree"]["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.02)
        tree = session.ledger.snapshot()["tree"]
        assert (tree["calls"], tree["in_flight"], tree["input_tokens"],
                tree["output_tokens"]) == (1, 0, 7, 3)
        late = events(rt, "host.call.late", function="llm_query")
        assert [(e["tokens_in"], e["tokens_out"]) for e in late] == [(7, 3)]
        # what the provider answered late is kept, as an answer in time is
        assert late[0]["model"] == "hanging"
        assert rt.audit_path is not None
        store = BodyStore(rt.audit_path.parent / "bodies")
        assert store.read(late[0]["completion_sha256"]) == b"too late"


def test_session_wall_time_holds_during_a_cell(runtimes: Runtimes,
                                               release: threading.Event) -> None:
    """``session_timeout_s`` reached while a cell waits on a hung tool: the cell ends, the
    session is marked dead and refuses further cells, and the log names the session limit."""
    def sleepy() -> str:
        release.wait(HANG_S)
        return "woke"

    rt = runtimes(limits={"cell_timeout_s": 30, "session_timeout_s": 4}, rules=PERMIT_ALL)
    with watched_session(rt, tools={"sleepy": sleepy}) as (session, _):
        started = time.monotonic()   # the session's clock started before this
        result = exec_bounded(session, "sleepy()", HANG_S / 2)
        elapsed = time.monotonic() - started
        assert elapsed < 4 + GRACE_S + SLACK_S, f"the session lived {elapsed:.1f} s"
        assert result.status == "interrupted", (result.status, result.error)
        assert "session_timeout_s" in (result.error or ""), result.error
        assert session.state is SessionState.DEAD
        with pytest.raises(SessionKilled):
            session.exec("print(1)")
        assert events(rt, "limit.exceeded", limit="session_timeout_s")
        abandoned = events(rt, "host.call", function="tool.sleepy", outcome="abandoned")
        assert [e["limit"] for e in abandoned] == ["session_timeout_s"]


def test_an_abandoned_rlm_query_closes_its_child(runtimes: Runtimes,
                                                 release: threading.Event) -> None:
    """``rlm_query`` whose child's root model hangs: the parent cell ends at its wall time,
    and the child session is closed then (its sandbox killed), not left running."""
    rt = runtimes(limits={"cell_timeout_s": 2}, budgets={"tree": {"max_depth": 1}},
                  rules=[{"id": "permit-rlm", "effect": "permit", "function": "rlm_query"}])
    rt.rlm_lm = HangingLM(release)
    with watched_session(rt) as (session, _):
        result = exec_bounded(session, "rlm_query('question')", HANG_S / 2)
        assert result.status == "interrupted", (result.status, result.error)
        children = [e["session"] for e in events(rt, "session.create") if e["depth"] == 1]
        assert len(children) == 1
        ended = events(rt, "session.end", session=children[0])
        assert [e["reason"] for e in ended] == [
            "abandoned: its calling cell stopped waiting"]
        assert [e["limit"] for e in events(rt, "host.call", outcome="abandoned",
                                           function="rlm_query")] == ["cell_timeout_s"]
        # the child's hung root completion is abandoned by the child's close, before its end
        assert [e["limit"] for e in events(rt, "host.call", outcome="abandoned",
                                           session=children[0])] == ["close"]
