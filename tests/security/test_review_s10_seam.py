"""Review (s10, review_seam): attacks on this morning's host-call seam changes (issue 16:
run_bounded's lock hand-off, the ledger's ``usage_of``, the provider kind read once per
class, the process close waiting on the init's pidfd) that succeed today. Each test
performs the attack and asserts the documented promise; it is marked
``xfail(strict=True)`` until the seam is fixed (then remove the mark).

Host-side seams do not depend on the sandbox, so these run on the process backend only.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rlmbox.errors import SessionClosed
from rlmbox.lm.base import Completion, LMRequest
from rlmbox.lm.scripted import ScriptedLM
from rlmbox.runtime.ledger import Ledger
from rlmbox.sandboxes.process.cgroups import Cgroup

from .harness import Runtimes, audit_records, events, exec_bounded, watched_session

HANG_S = 30.0
PERMIT_LLM = [{"id": "permit-llm", "effect": "permit", "function": "llm_query"}]


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Frees every hung call when the test ends, pass or fail."""
    event = threading.Event()
    yield event
    event.set()


class _AnswersAtAbandon:
    """An LM whose reply comes back exactly while the host is abandoning the call: after
    the ledger settled the abandoned reservation, before the ``host.call`` record."""

    name = "at-abandon"
    model = "at-abandon"

    def __init__(self, abandoning: threading.Event) -> None:
        self._abandoning = abandoning
        self.returned = threading.Event()

    def complete(self, prompt: str, *, model: str | None = None) -> Completion:
        self._abandoning.wait(HANG_S)
        self.returned.set()
        return Completion(text="just in time", model=model or self.model, input_tokens=7,
                          output_tokens=3, cost_usd=0.5)


@pytest.mark.parametrize("backend", ["process"])
def test_an_abandoned_call_record_states_what_the_ledger_charged(
        runtimes: Runtimes, monkeypatch: pytest.MonkeyPatch,
        release: threading.Event) -> None:
    """audit-format.md: ``host.call`` (outcome ``abandoned``) carries the usage charged at
    the abandonment and ``host.call.late`` the late usage charged when the call ended; the
    two together are what the ledger charged. A completion that lands between
    ``Ledger.abandon`` (charges ``ctx.usage[:charged]``) and ``_finish`` (sums the whole
    ``ctx.usage``) is stated twice: once in the abandoned record, once in the late one."""
    abandoning = release   # set when the ledger settled the abandoned call (or at teardown)
    lm = _AnswersAtAbandon(abandoning)
    real_abandon = Ledger.abandon

    def abandon(self: Ledger, reservation: Any, **usage: Any) -> None:
        real_abandon(self, reservation, **usage)
        abandoning.set()
        lm.returned.wait(5)
        time.sleep(0.3)   # the worker appends the completion, then waits on outcome.lock

    monkeypatch.setattr(Ledger, "abandon", abandon)
    rt = runtimes(lm=lm, limits={"cell_timeout_s": 1}, rules=PERMIT_LLM)
    with watched_session(rt) as (session, _):
        result = exec_bounded(session, "llm_query('hello')", HANG_S)
        assert result.status == "interrupted", (result.status, result.error)
        deadline = time.monotonic() + 10
        while session.ledger.snapshot()["tree"]["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.02)
        tree = session.ledger.snapshot()["tree"]
        assert (tree["in_flight"], tree["input_tokens"], tree["output_tokens"]) == (0, 7, 3)
        deadline = time.monotonic() + 5
        while not events(rt, "host.call.late") and time.monotonic() < deadline:
            time.sleep(0.02)
        abandoned = events(rt, "host.call", function="llm_query", outcome="abandoned")
        late = events(rt, "host.call.late", function="llm_query")
    assert len(abandoned) == 1
    assert len(late) == 1
    stated_in = abandoned[0]["tokens_in"] + late[0]["tokens_in"]
    stated_cost = abandoned[0]["cost_usd"] + late[0]["cost_usd"]
    assert (stated_in, stated_cost) == (7, 0.5), (
        f"the log states {stated_in} input tokens and ${stated_cost} for a call the ledger "
        f"charged 7 and $0.5 (abandoned record {abandoned[0]['tokens_in']}, late "
        f"{late[0]['tokens_in']})")


class _Logged:
    """A host's logging wrapper around any provider: it forwards every attribute, so it is
    a conversation provider exactly when the provider it wraps is one."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls: list[str] = []

    def __getattr__(self, attr: str) -> Any:
        self.calls.append(attr)
        return getattr(self._inner, attr)


class _CountingLM(ScriptedLM):
    """A conversation provider that counts a request as 1000 input tokens."""

    def __init__(self) -> None:
        super().__init__(default="sent anyway")
        self.sent = 0

    def respond(self, request: LMRequest, *, model: str | None = None,
                on_text: Any = None) -> Completion:
        self.sent += 1
        return Completion(text="sent anyway", model=model or self.model,
                          input_tokens=1000, output_tokens=1)

    def count_input_tokens(self, request: LMRequest, *, model: str | None = None) -> int:
        return 1000

    def complete(self, prompt: str, *, model: str | None = None) -> Completion:
        self.sent += 1
        return Completion(text="sent anyway", model=model or self.model,
                          input_tokens=1000, output_tokens=1)


@pytest.mark.parametrize("backend", ["process"])
def test_a_wrapped_counting_provider_is_counted_before_sending(runtimes: Runtimes) -> None:
    """lm-providers.md, "Counting before the call": under an ``input_tokens`` budget an
    ``llm_query`` whose count does not fit is refused before the completion is requested.
    The kind of a provider (conversation or plain) is now decided by its class, once: a
    forwarding wrapper seen first around a plain provider stays "plain" for the life of
    the process, so the same wrapper around a counting provider is never asked to count
    and the request is sent past the budget (and flattened: its system prompt and turns
    are no longer separate)."""
    plain = runtimes(lm=_Logged(ScriptedLM(default="plain")), rules=PERMIT_LLM)
    with plain.session() as session:
        assert session.exec("print(llm_query('warm up'))").stdout == "plain\n"
    counting = _CountingLM()
    rt = runtimes(lm=_Logged(counting), rules=PERMIT_LLM,
                  budgets={"tree": {"input_tokens": 100}})
    with rt.session() as session:
        result = session.exec(
            "try:\n    llm_query('x' * 400)\nexcept Exception as exc:\n"
            "    print(type(exc).__name__)\n")
    assert result.status == "ok", result.error
    assert counting.sent == 0, (
        f"sent {counting.sent} request(s) counted at 1000 tokens under a budget of 100; "
        f"the cell printed {result.stdout!r}")
    assert result.stdout == "BudgetExceeded\n"


PERMIT_TOOLS = [{"id": "permit-tools", "effect": "permit", "function": "tool.*"}]


@pytest.mark.parametrize("backend", ["process"])
def test_closing_a_session_during_a_host_call_records_nothing_after_session_end(
        runtimes: Runtimes, release: threading.Event) -> None:
    """security.md 23b: a session closed from another thread while a cell runs "records
    nothing after ``session.end``". The existing test closes during a ``time.sleep`` cell;
    closed while the cell waits on a host call, the call's outcome (``host.call``, and
    ``host.call.late`` for an abandoned one) is written by the dispatcher straight to the
    scope, after ``session.end``."""
    started = threading.Event()

    def slow() -> str:
        started.set()
        release.wait(HANG_S)
        return "done"

    rt = runtimes(rules=PERMIT_TOOLS, limits={"cell_timeout_s": 10})
    session = rt.session(tools={"slow": slow})
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["result"] = session.exec("print(slow())")
        except Exception as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=run, name="exec-during-close", daemon=True)
    worker.start()
    try:
        assert started.wait(10), "the tool never ran"
        session.close()
    finally:
        release.set()
        worker.join(HANG_S)
    assert not worker.is_alive()
    assert isinstance(outcome.get("error"), SessionClosed), outcome
    recorded = [r for r in audit_records(rt) if r.get("session") == session.id]
    names = [str(r.get("event")) for r in recorded]
    assert names.count("session.end") == 1
    end = names.index("session.end")
    # the call was abandoned by the close, and says so before the end; what the tool did
    # after (it returned once released) is the late record, the one event that can follow
    before = [r for r in recorded[:end] if r.get("event") == "host.call"]
    assert [(r["outcome"], r["limit"]) for r in before] == [("abandoned", "close")]
    assert names[end + 1:] in ([], ["host.call.late"]), f"after session.end: {names[end + 1:]}"


@pytest.mark.parametrize("backend", ["process"])
def test_an_interrupt_ends_a_cell_waiting_on_a_hung_host_call(
        runtimes: Runtimes, release: threading.Event) -> None:
    """daemon.md "Interrupting a cell": an interrupt ends the running cell "as the cell's
    own timeout does". The timeout abandons a host call still running at the deadline
    (26a); an interrupt while the cell waits on a hung tool changes nothing on the host,
    which keeps waiting for the tool until the cell's wall time (here 10 s), so the
    client's interrupt is not an interrupt."""
    started = threading.Event()

    def hung() -> str:
        started.set()
        release.wait(HANG_S)
        return "done"

    rt = runtimes(rules=PERMIT_TOOLS, limits={"cell_timeout_s": 10})
    with watched_session(rt, tools={"hung": hung}) as (session, _):
        box: dict[str, Any] = {}

        def run() -> None:
            box["result"] = session.exec("print(hung())")

        worker = threading.Thread(target=run, name="exec-interrupted", daemon=True)
        worker.start()
        try:
            assert started.wait(10), "the tool never ran"
            interrupted_at = time.monotonic()
            assert session.interrupt("test")
            worker.join(4.0)   # interrupt_grace_s is 1 s; 3 s of slack for a loaded host
            waited = time.monotonic() - interrupted_at
            ended = not worker.is_alive()
        finally:
            release.set()
            worker.join(HANG_S)
    assert ended, f"the interrupted cell still ran {waited:.1f} s after the interrupt"
    assert box["result"].status == "interrupted"


@pytest.mark.parametrize("backend", ["process"])
def test_cleanup_failed_is_written_before_session_end(runtimes: Runtimes,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """audit-format.md: ``sandbox.cleanup_failed`` is "written before ``session.end``";
    the existing test (test_pid_reuse.py) finds the record but not its place. A cgroup that
    will not go (a directory the host made inside it) must be recorded before the end, and
    the sandbox's uid must stay leased (process backend, ``_release_uid``)."""
    real_remove = Cgroup.remove
    # the close gives up on the directory after 0.3 s, not 5 s per controller
    monkeypatch.setattr(Cgroup, "remove", lambda self, timeout=0.3: real_remove(self, timeout))
    rt = runtimes()
    session = rt.session()
    group = Cgroup.existing(session.sandbox.info.sandbox_id)
    if group is None:
        pytest.skip("no cgroup for the process sandbox (not root?)")
    group_dirs = [str(Path(f).parent / "held") for f in group.procs_files()]
    for path in group_dirs:
        os.mkdir(path)
    try:
        session.close()
        lease = getattr(session.sandbox, "_uid", None)
        still_leased = lease is None or getattr(lease, "_fd", None) is not None
    finally:
        for path in group_dirs:
            os.rmdir(path)
        group.remove()
    recorded = [str(r.get("event")) for r in audit_records(rt)
                if r.get("session") == session.id]
    assert "sandbox.cleanup_failed" in recorded
    assert recorded[-2:] == ["sandbox.cleanup_failed", "session.end"], recorded[-3:]
    assert still_leased, "the uid of a sandbox whose cgroup would not go was released"


@pytest.mark.parametrize("backend", ["process"])
def test_a_host_keyboard_interrupt_during_a_call_settles_it(
        runtimes: Runtimes, release: threading.Event) -> None:
    """Ctrl-C in the program that runs the session (a notebook's interrupt, the DSPy
    adapter, a script) raises ``KeyboardInterrupt`` in the thread waiting in
    ``run_bounded``. The call is then neither in time nor abandoned: ``on_abandon`` never
    runs, so the reservation is never settled (``in_flight`` stays 1: under
    ``max_concurrent: 1`` the tree can never call again), and the tool that ran has a
    ``host.call.start`` and no outcome, which audit-format.md reads as "a crash". The
    promise (ledger.py, security.md 46): every reservation is settled exactly once and
    nothing stays in flight once the call ended; the call's outcome is recorded."""
    main = threading.get_ident()
    ended = threading.Event()

    def raise_interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGUSR1, raise_interrupt)

    def slow() -> str:
        signal.pthread_kill(main, signal.SIGUSR1)   # "Ctrl-C" while the host waits
        release.wait(0.5)
        ended.set()
        return "done"

    rt = runtimes(rules=PERMIT_TOOLS, limits={"cell_timeout_s": 10},
                  budgets={"tree": {"calls": 10, "max_concurrent": 1}})
    try:
        with rt.session(tools={"slow": slow}) as session:
            with pytest.raises(KeyboardInterrupt):
                session.exec("print(slow())")
            assert ended.wait(10)
            deadline = time.monotonic() + 1
            while session.ledger.snapshot()["tree"]["in_flight"] \
                    and time.monotonic() < deadline:
                time.sleep(0.02)
            tree = session.ledger.snapshot()["tree"]
            open_left = session.ledger.open_reservations()
    finally:
        signal.signal(signal.SIGUSR1, previous)
    outcomes = [r.get("outcome") for r in events(rt, "host.call", function="tool.slow")]
    assert (tree["in_flight"], open_left) == (0, 0), f"left in flight: {tree}"
    assert outcomes, "the tool ran and has no host.call outcome record"
