"""Hostile review s11 ("seam2"): the interrupt/close cuts of host calls
(``bounded_call.CallCuts``), the dispatcher's close gate, the agent's deferred interrupt
and the late record. Strict xfails are promises found broken."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from rlmbox.audit.bodies import BodyStore
from rlmbox.lm.base import Completion
from rlmbox.lm.scripted import ScriptedLM
from rlmbox.runtime.bounded_call import CallAbandoned, CallCuts, Deadline, run_bounded

from .harness import Runtimes, audit_records, events, exec_bounded, watched_session

PERMIT_TOOLS = [{"id": "permit-tools", "effect": "permit", "function": "tool.*"}]


def _far() -> Deadline:
    return Deadline(time.monotonic() + 30, "cell_timeout_s", 30)


def test_a_cut_racing_the_calls_start_still_ends_the_call() -> None:
    """``on_abandon`` runs strictly before ``on_late`` and both run (run_bounded's
    docstring; the ledger frees the slot in ``on_late``). The cut races the call's start
    naturally here (no patching): in roughly one try in ten the waiter takes the cut
    before the worker thread began, the worker then returns without ``on_late``."""
    for attempt in range(1500):
        cuts = CallCuts()
        lates: list[BaseException | None] = []
        go = threading.Event()

        def cutter(cuts: CallCuts = cuts, go: threading.Event = go) -> None:
            go.wait()
            cuts.cut()

        thread = threading.Thread(target=cutter, daemon=True)
        thread.start()
        go.set()
        try:
            run_bounded(lambda: 1, _far(), name="review", cuts=cuts,
                        on_abandon=lambda _a: None, on_late=lates.append)
        except CallAbandoned:
            for _ in range(200):   # the work is instant: on_late follows within ms
                if lates:
                    break
                time.sleep(0.001)
            assert lates, f"attempt {attempt}: abandoned, and on_late never ran"
        thread.join()


@pytest.mark.parametrize("backend", ["process"])
def test_interrupts_racing_host_calls_leave_nothing_in_flight(runtimes: Runtimes) -> None:
    """Budgets: a call's slot is freed when it ends (abandoned ones when their thread
    ends). A client interrupts a cell that runs batches of instant LM calls in a loop
    (32 in flight at a time), again and again: after each cell, nothing may stay in
    flight. Each interrupt races the starts of the calls in flight; the first leak ends
    the attack (within a few tries here), else 10 s of tries."""
    rt = runtimes(limits={"cell_timeout_s": 10},
                  rules=[{"id": "permit-llm", "effect": "permit", "function": "llm_query*"}],
                  budgets={"tree": {"calls": 10_000_000, "max_prompt_chars": 10_000_000,
                                    "max_concurrent": 64}})
    code = "while True:\n    llm_query_batched([str(i) for i in range(32)])\n"
    with watched_session(rt) as (session, _):
        stop = time.monotonic() + 10
        attempt = 0
        while time.monotonic() < stop:
            attempt += 1
            worker = threading.Thread(target=_quietly, args=(
                lambda: exec_bounded(session, code, 10),), daemon=True)
            worker.start()
            time.sleep(0.01 + (attempt % 7) * 0.0013)
            session.interrupt("review")
            worker.join(10)
            assert not worker.is_alive()
            settle = time.monotonic() + 0.3   # an abandoned (instant) call ends by then
            while session.ledger.snapshot()["tree"]["in_flight"] and \
                    time.monotonic() < settle:
                time.sleep(0.002)
            in_flight = session.ledger.snapshot()["tree"]["in_flight"]
            assert in_flight == 0, f"attempt {attempt}: {in_flight} call(s) left in flight"


def _quietly(run: Callable[[], object]) -> None:
    """Runs a cell whose end (closed, interrupted) is not what the test checks."""
    with contextlib.suppress(Exception):
        run()


def _after_end(records: list[dict[str, Any]], session_id: str) -> list[str]:
    """The events of ``session_id`` written after its ``session.end``."""
    mine = [r for r in records if r.get("session") == session_id]
    ends = [i for i, r in enumerate(mine) if r.get("event") == "session.end"]
    assert ends, f"session {session_id} never ended"
    return [str(r.get("event")) for r in mine[ends[0] + 1:]]


@pytest.mark.parametrize("how", ["close", "interrupt"])
@pytest.mark.parametrize("backend", ["process"])
def test_a_child_closed_during_its_root_completion_records_nothing_after_its_end(
        runtimes: Runtimes, how: str) -> None:
    """security.md 23b / audit-format.md: a closed session records nothing after
    ``session.end`` except a ``host.call.late``. The parent's cell waits in ``rlm_query``;
    the child's root model is slow; the parent is closed (or interrupted): the rlm_query
    is abandoned and closes its child (``ctx.on_cancel``), whose ``session.end`` is
    written at once. The child's root-model completion then returns."""
    asked, release = threading.Event(), threading.Event()

    def model(_prompt: str) -> str:
        asked.set()
        release.wait(20)
        return "FINAL(late)"

    rt = runtimes(lm=ScriptedLM(model), limits={"cell_timeout_s": 20},
                  rules=[{"id": "permit-rlm", "effect": "permit", "function": "rlm_query"}],
                  budgets={"tree": {"calls": 50, "max_prompt_chars": 10000, "max_depth": 2}})
    try:
        with watched_session(rt) as (session, _):
            worker = threading.Thread(target=_quietly, args=(lambda: exec_bounded(
                session, "print(rlm_query('hi'))", 25),), daemon=True)
            worker.start()
            assert asked.wait(10), "the child's root model was never asked"
            if how == "close":
                session.close()
            else:
                assert session.interrupt("review")
            worker.join(10)
            children = {str(r["session"]) for r in events(rt, "session.end")
                        if r.get("session") != session.id}
            assert children, "the child session did not end with its caller"
            release.set()
            time.sleep(0.5)   # the child's root completion returns and is settled
    finally:
        release.set()
    records = audit_records(rt)
    for child in children:
        late = [e for e in _after_end(records, child) if e != "host.call.late"]
        assert not late, f"child {child} recorded {late} after its session.end"


@pytest.mark.parametrize("backend", ["process"])
def test_an_interrupt_of_one_cell_does_not_cut_the_next_cells_calls(
        runtimes: Runtimes, monkeypatch: pytest.MonkeyPatch) -> None:
    """daemon.md: an interrupt that arrives after the cell ended does nothing; row 23e
    cuts the calls of the *interrupted* cell. Delivering the SIGINT takes a while on some
    backends (docker: an engine API call that returns after the signal landed); modelled
    here by 0.3 s spent in ``sandbox.interrupt`` after the signal was sent. The cell ends
    at the signal, the client runs its next cell at once, and that cell's host calls are
    refused as "interrupted" though it never was."""
    ran: list[str] = []

    def fast() -> str:
        ran.append("fast")
        return "ran"

    rt = runtimes(rules=PERMIT_TOOLS, limits={"cell_timeout_s": 10})
    with watched_session(rt, tools={"fast": fast}) as (session, _):
        deliver = session.sandbox.interrupt

        def slow_delivery() -> None:
            deliver()
            time.sleep(0.3)   # the engine answers the kill request after delivering it

        monkeypatch.setattr(session.sandbox, "interrupt", slow_delivery)
        interrupter = threading.Timer(0.3, lambda: session.interrupt("review"))
        interrupter.start()
        first = exec_bounded(session, "import time\ntime.sleep(5)", 10)
        assert first.status == "interrupted", first
        second = exec_bounded(session, "import time\ntime.sleep(0.5)\nprint(fast())", 10)
        interrupter.join()
        assert second.status == "ok", second.error
        assert second.stdout == "ran\n", second.stdout
        assert ran == ["fast"]
        assert not events(rt, "host.call", function="tool.fast", outcome="abandoned")


class _HungLM:
    """An LM whose answer (naming an operator secret) comes only once released."""

    name = "hung"
    model = "hung"

    def __init__(self, release: threading.Event, text: str) -> None:
        self._release, self._text = release, text
        self.asked, self.finished = threading.Event(), threading.Event()

    def complete(self, prompt: str, *, model: str | None = None) -> Completion:
        self.asked.set()
        self._release.wait(20)
        self.finished.set()
        return Completion(text=self._text, model=model or self.model, input_tokens=5,
                          output_tokens=4)


def _settled(session: Any) -> None:
    deadline = time.monotonic() + 10
    while session.ledger.snapshot()["tree"]["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.02)


@pytest.mark.parametrize("backend", ["process"])
def test_a_late_answer_naming_a_secret_is_redacted_in_host_call_late(
        runtimes: Runtimes) -> None:
    """Held: the late completion body (new in host.call.late) passes the log's redaction
    as every body does; an operator secret in the LM's late answer is not on disk."""
    secret = "sk-review-s11-" + "q7Zx" * 6
    release = threading.Event()
    lm = _HungLM(release, f"the key is {secret}")
    rt = runtimes(lm=lm, limits={"cell_timeout_s": 10})
    rt.audit.add_secret(secret)
    try:
        with watched_session(rt) as (session, _):
            worker = threading.Thread(target=_quietly, args=(lambda: exec_bounded(
                session, "llm_query('hello')", 15),), daemon=True)
            worker.start()
            assert lm.asked.wait(10)
            assert session.interrupt("review")
            worker.join(10)
            release.set()
            assert lm.finished.wait(10)
            _settled(session)
            late = events(rt, "host.call.late", function="llm_query")
            assert len(late) == 1
            assert late[0]["tokens_out"] == 4
    finally:
        release.set()
    rt.audit.sync()
    assert rt.audit_path is not None
    directory = rt.audit_path.parent
    for path in directory.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), f"{path} holds the secret"
    store = BodyStore(directory / "bodies")
    body = store.read(late[0]["completion_sha256"])
    assert body is not None
    assert b"the key is" in body


@pytest.mark.parametrize("backend", ["process"])
def test_a_call_that_never_ran_has_no_late_record_saying_it_ended(
        runtimes: Runtimes) -> None:
    """audit-format.md: host.call.late is written when "an abandoned call really ended"
    (the function returned late). A call the interrupted cell makes is "abandoned without
    running": the tool never runs, so no record may say it ended ``ok``."""
    runs: list[str] = []
    gate = threading.Event()

    def tool() -> str:
        runs.append("ran")
        gate.wait(20)
        return "x"

    rt = runtimes(rules=PERMIT_TOOLS, limits={"cell_timeout_s": 10})
    try:
        with watched_session(rt, tools={"tool": tool}) as (session, _):
            code = ("try:\n    tool()\nexcept KeyboardInterrupt:\n    pass\n"
                    "try:\n    tool()\nexcept Exception:\n    pass\n")
            worker = threading.Thread(target=_quietly, args=(lambda: exec_bounded(
                session, code, 15),), daemon=True)
            worker.start()
            for _ in range(500):
                if runs:
                    break
                time.sleep(0.01)
            assert session.interrupt("review")
            worker.join(10)
            gate.set()
            _settled(session)
            assert runs == ["ran"]
            starts = events(rt, "host.call.start", function="tool.tool")
            assert len(starts) == 2
            never_ran = starts[1]["call_id"]
            late = events(rt, "host.call.late", function="tool.tool", call_id=never_ran)
            assert not late, f"a call that never ran is recorded as ended: {late}"
    finally:
        gate.set()


@pytest.mark.parametrize("backend", ["process"])
def test_a_tool_closing_its_own_session_records_nothing_after_the_end(
        runtimes: Runtimes) -> None:
    """23b from inside: a host function (operator code the cell can call) closes the
    session it serves. The close must not deadlock on the call it is made from, the call
    is abandoned (``limit: close``) before ``session.end``, and only a
    ``host.call.late`` follows the end."""
    holder: dict[str, Any] = {}

    def closer() -> str:
        holder["session"].close()
        return "closed"

    rt = runtimes(rules=PERMIT_TOOLS, limits={"cell_timeout_s": 10})
    with watched_session(rt, tools={"closer": closer}) as (session, _):
        holder["session"] = session
        began = time.monotonic()
        with contextlib.suppress(Exception):
            exec_bounded(session, "closer()", 15)
        assert time.monotonic() - began < 5, "the close waited on its own call"
        _settled(session)
    records = audit_records(rt)
    after = [e for e in _after_end(records, session.id) if e != "host.call.late"]
    assert not after, after
    abandoned = events(rt, "host.call", function="tool.closer", outcome="abandoned")
    assert [a["limit"] for a in abandoned] == ["close"]


@pytest.mark.parametrize("backend", ["process"])
def test_a_closed_child_asks_its_root_model_nothing_more(runtimes: Runtimes) -> None:
    """Commit 2e581ae / security.md 23b: an rlm_query's children are closed with it, so
    nothing of theirs starts after. The child's root model is slow on its first turn and
    then answers without code or FINAL; the parent is closed meanwhile. From the close
    on, the closed child must not send its root model another request."""
    asked, release = threading.Event(), threading.Event()
    prompts: list[float] = []

    def model(_prompt: str) -> str:
        prompts.append(time.monotonic())
        if len(prompts) == 1:
            asked.set()
            release.wait(20)
        return "Still thinking about it."

    rt = runtimes(lm=ScriptedLM(model), limits={"cell_timeout_s": 20},
                  rules=[{"id": "permit-rlm", "effect": "permit", "function": "rlm_query"}],
                  budgets={"tree": {"calls": 50, "max_prompt_chars": 100000, "max_depth": 2}})
    try:
        with watched_session(rt) as (session, _):
            worker = threading.Thread(target=_quietly, args=(lambda: exec_bounded(
                session, "print(rlm_query('hi'))", 25),), daemon=True)
            worker.start()
            assert asked.wait(10), "the child's root model was never asked"
            session.close()
            closed_at = time.monotonic()
            worker.join(10)
            release.set()
            time.sleep(1.0)   # the first turn returns; any further turn starts by now
    finally:
        release.set()
    after = [t for t in prompts if t > closed_at]
    records = audit_records(rt)
    children = {str(r["session"]) for r in records
                if r.get("event") == "session.end" and r.get("session") != session.id}
    started_late = [e for child in children for e in _after_end(records, child)
                    if e == "host.call.start"]
    assert not after, f"{len(after)} root-model request(s) sent after the close"
    assert not started_late, f"{len(started_late)} host.call.start after the child's end"


@pytest.mark.parametrize("how", ["interrupt", "close"])
@pytest.mark.parametrize("backend", ["process"])
def test_a_cut_batch_has_one_outcome_per_admitted_item_and_frees_every_slot(
        runtimes: Runtimes, how: str) -> None:
    """Held: ``llm_query_batched`` of 6 prompts, 2 at a time (max_concurrent), the model
    hung; the cell is interrupted (or the session closed). Every item that was admitted
    (host.call.start) has exactly one host.call, items not started never start, each
    abandoned item gets its late record once the model returns, and nothing stays in
    flight."""
    release = threading.Event()
    lm = _HungLM(release, "late answer")
    rt = runtimes(lm=lm, limits={"cell_timeout_s": 10},
                  rules=[{"id": "permit-llm", "effect": "permit", "function": "llm_query*"}],
                  budgets={"tree": {"calls": 50, "max_prompt_chars": 10000,
                                    "max_concurrent": 2}})
    try:
        with watched_session(rt) as (session, _):
            worker = threading.Thread(target=_quietly, args=(lambda: exec_bounded(
                session, "llm_query_batched([str(i) for i in range(6)])", 15),),
                daemon=True)
            worker.start()
            assert lm.asked.wait(10)
            time.sleep(0.2)
            if how == "interrupt":
                assert session.interrupt("review")
            else:
                session.close()
            worker.join(10)
            assert not worker.is_alive()
            release.set()
            _settled(session)
            assert session.ledger.snapshot()["tree"]["in_flight"] == 0
            assert session.ledger.open_reservations() == 0
    finally:
        release.set()
    starts = events(rt, "host.call.start", function="llm_query_batched")
    outcomes = events(rt, "host.call", function="llm_query_batched")
    assert 1 <= len(starts) <= 2
    assert sorted(o["outcome"] for o in outcomes) == ["abandoned"] * len(starts)
    assert {o["limit"] for o in outcomes} == {how}
    assert len(events(rt, "host.call.late", function="llm_query_batched")) == len(starts)


FIND_IO = ("import gc\n"
           "io = next(o for o in gc.get_objects() if type(o).__name__ == 'FrameIO')\n")


@pytest.mark.parametrize("backend", ["process"])
def test_a_cell_holding_frame_io_busy_still_ends_at_its_wall_time(
        runtimes: Runtimes) -> None:
    """Held: model code reaches the agent's ``FrameIO`` (gc) and sets ``busy`` for good,
    so every SIGINT is deferred; the cell's wall time still ends it (killed after the
    grace period, said so) and the session refuses further cells."""
    rt = runtimes(limits={"cell_timeout_s": 2})
    with watched_session(rt) as (session, _):
        began = time.monotonic()
        result = exec_bounded(session, FIND_IO + "io.busy = True\nwhile True:\n    pass\n",
                              20)
        assert time.monotonic() - began < 12
        assert result.status == "killed", (result.status, result.error)
        with pytest.raises(Exception, match=r"killed|dead|sandbox"):
            session.exec("print(1)")


@pytest.mark.parametrize("backend", ["process"])
def test_a_cell_planting_a_deferred_interrupt_harms_only_its_own_session(
        runtimes: Runtimes) -> None:
    """Held: a cell sets ``FrameIO.interrupted``, so the agent raises KeyboardInterrupt
    outside any cell (when it sends the result). The result still reaches the host whole,
    and the session is then usable or ends said so; the host never hangs."""
    rt = runtimes(limits={"cell_timeout_s": 3})
    with watched_session(rt) as (session, _):
        first = exec_bounded(session, FIND_IO + "io.interrupted = True\nprint('x')\n", 10)
        assert first.stdout == "x\n"
        second = exec_bounded(session, "print(2)", 10)   # the agent died: said so
        assert second.status in ("ok", "killed"), second
        if second.status == "killed":
            assert second.error


@pytest.mark.parametrize("backend", ["process"])
def test_no_child_session_is_created_after_its_parent_ended(runtimes: Runtimes) -> None:
    """Commit 2e581ae: an rlm_query's children are closed with it, so none starts after
    the close. The parent is closed right as its cell's rlm_query is admitted (its
    host.call.start durable), while the child's sandbox is still starting: no session
    of the tree may begin after the parent's ``session.end``."""
    rt = runtimes(lm=ScriptedLM(lambda _p: "FINAL(done)"), limits={"cell_timeout_s": 20},
                  rules=[{"id": "permit-rlm", "effect": "permit", "function": "rlm_query"}],
                  budgets={"tree": {"calls": 50, "max_prompt_chars": 10000, "max_depth": 2}})
    with watched_session(rt) as (session, _):
        worker = threading.Thread(target=_quietly, args=(lambda: exec_bounded(
            session, "print(rlm_query('hi'))", 25),), daemon=True)
        worker.start()
        for _ in range(2000):
            if events(rt, "host.call.start", function="rlm_query"):
                break
            time.sleep(0.001)
        session.close()
        worker.join(10)
        time.sleep(1.0)   # a child still being spawned has started by now
    records = audit_records(rt)
    ends = [i for i, r in enumerate(records)
            if r.get("event") == "session.end" and r.get("session") == session.id]
    later = [(r.get("event"), r.get("session")) for r in records[ends[0] + 1:]
             if r.get("event") != "host.call.late"]
    assert not later, f"after the parent's session.end: {later}"


THREADED_CALLS = """
import threading, time
stop, seen = [], []
def loop():
    while not stop:
        try:
            big()
        except BaseException as exc:
            if not seen or seen[-1] != type(exc).__name__:
                seen.append(type(exc).__name__)
helper = threading.Thread(target=loop, daemon=True)
helper.start()
try:
    time.sleep(2.0)
finally:
    stop.append(1)
    helper.join()
print(seen)
"""


@pytest.mark.parametrize("backend", ["process"])
def test_an_interrupt_reaches_a_cell_whose_thread_is_reading_a_reply(
        runtimes: Runtimes) -> None:
    """daemon.md / row 23d: an interrupt ends the running cell with KeyboardInterrupt (a
    frame in transfer only delays it until the frame is whole). A cell (model code, as an
    RLM's parallel ``llm_query`` pool does) calls a host function from a helper thread in
    a loop while its main thread waits; the reply is large, so the helper is often inside
    ``FrameIO.recv``. Before 391a654 the SIGINT always raised in the main thread; now,
    roughly one try in three, the helper gets it and the cell runs on to its end."""
    reply = list(range(250_000))
    rt = runtimes(rules=PERMIT_TOOLS, limits={"cell_timeout_s": 10},
                  budgets={"tree": {"calls": 100_000, "max_prompt_chars": 10_000}})
    with watched_session(rt, tools={"big": lambda: reply}) as (session, _):
        for attempt in range(25):
            timer = threading.Timer(0.25, lambda: session.interrupt("review"))
            timer.start()
            began = time.monotonic()
            result = exec_bounded(session, THREADED_CALLS, 15)
            timer.join()
            took = time.monotonic() - began
            assert result.status == "interrupted", (
                f"attempt {attempt}: the cell ran on {took:.1f} s to {result.status!r}; "
                f"its helper thread got {result.stdout.strip()[:60]}...")
