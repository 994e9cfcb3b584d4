"""Review (s12, seam3): attacks on a host call's start record racing its deadline, an
interrupt and a close while it is synced, and on the warm start's cached proofs (commit
f602d0d: isolation proven once per properties object, the sandbox spec and session.create's
limits and property names made once). Each test performs an attack and asserts the promise.

The attacks were written against branch ``llmq`` (the start record synced by the call's own
thread), which broke three of them and was not merged. On main two promises broke: a call
whose deadline passed while its start record was synced still ran (the worker looked only
at the waiter's ``abandoned``; it now looks at the deadline and the cut too), and two
sessions starting at once on two backends could record each other's properties in
``session.create`` (one cached slot per runtime; now one entry per properties report).
Also on main: a tool raising ``SystemExit`` (argparse on arguments model code chose) left
its call with no outcome record, in flight for good, and the exit reached ``exec``'s caller
(the dispatcher settled ``Exception`` only; it now settles any exception but an interrupt
of the host's own thread).

To pin down the interleaving, the tests' log does the real sync, then holds the GIL to just
past the deadline (a busy wait, as a slow fsync returning then would leave the thread
running), or delivers the interrupt from the syncing thread itself.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from wrapped_log import WrappedLog

from rlmbox.audit.reader import iter_records
from rlmbox.errors import AuditWriteError
from rlmbox.lm.scripted import ScriptedLM
from rlmbox.runtime.runtime import Runtime
from rlmbox.runtime.session import Session
from rlmbox.sandboxes.base import IsolationProperty, SandboxInfo

from .harness import policy_yaml

TOOL_TIMEOUT_S = 0.3
CALL = "try:\n    print(pay(1))\nexcept BaseException as exc:\n    print(type(exc).__name__)"
LM_CALL = CALL.replace("pay(1)", "llm_query('spend')")
BATCH_CALL = CALL.replace("pay(1)", "llm_query_batched(['spend'])")
RLM_CALL = CALL.replace("pay(1)", "rlm_query('spend')")
FUNCTIONS = {CALL: "tool.pay", LM_CALL: "llm_query", BATCH_CALL: "llm_query_batched",
             RLM_CALL: "rlm_query"}


def _spin_until(moment: float) -> None:
    """Holds the GIL until ``moment`` (sleeping first, to spare the CPU, when it is far:
    even ``sleep(0)`` hands the GIL over)."""
    if moment - time.monotonic() > 0.003:
        time.sleep(moment - time.monotonic() - 0.003)
    while time.monotonic() < moment:
        pass


class StartSyncLog(WrappedLog):
    """The real log, calling :meth:`start_synced` in the first sync after a
    ``host.call.start`` is appended, once armed (on whichever thread syncs it: the call's
    own on this branch, the caller's on main, where these attacks hold)."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.armed = False
        self.pending = False
        self.appended = 0.0   # when the start record was appended (its deadline was set)

    def append(self, event: str, *, session: str | None = None, parent: str | None = None,
               depth: int = 0, tenant: str | None = None,
               bodies: Mapping[str, str | bytes] | None = None,
               **attributes: Any) -> dict[str, Any]:
        record = self.log.append(event, session=session, parent=parent, depth=depth,
                                 tenant=tenant, bodies=bodies, **attributes)
        if event == "host.call.start" and self.armed:
            self.pending, self.appended = True, time.monotonic()
        return record

    def sync(self) -> None:
        if not self.pending:
            self.log.sync()
            return
        self.pending = False
        self.start_synced()

    def start_synced(self) -> None:
        self.log.sync()


class SyncPastDeadline(StartSyncLog):
    """A start record's sync ends 2 ms after the call's tool deadline, with the syncing
    thread still running."""

    def start_synced(self) -> None:
        self.log.sync()
        _spin_until(self.appended + TOOL_TIMEOUT_S + 0.002)


class InterruptWhileSyncing(StartSyncLog):
    """A start record's sync is interrupted (``Session.interrupt``, or closed) after the
    real fsync and before the sync returns: the interrupt lands during it."""

    def __init__(self, directory: Path, how: str) -> None:
        super().__init__(directory)
        self.how = how
        self.session: Session | None = None

    def start_synced(self) -> None:
        self.log.sync()
        target, self.session = self.session, None   # once per cell
        if target is None:
            return
        if self.how == "interrupt":
            target.interrupt(by="review")
        else:
            target.close()
        _spin_until(time.monotonic() + 0.001)


def _pay_policy(tmp_path: Path) -> Path:
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_yaml("process", limits={"tool_timeout_s": TOOL_TIMEOUT_S}, rules=[
        {"id": "permit-pay", "effect": "permit", "function": "tool.pay"},
        {"id": "permit-llm", "effect": "permit", "function": "llm_query"},
        {"id": "permit-batch", "effect": "permit", "function": "llm_query_batched"},
        {"id": "permit-rlm", "effect": "permit", "function": "rlm_query"}],
        budgets={"tree": {"calls": 100}}))
    return policy


def _call_records(directory: Path, function: str) -> list[dict[str, Any]]:
    return [r for r in iter_records(directory)
            if r["event"] in ("host.call", "host.call.late") and r.get("function") == function]


def test_a_call_whose_deadline_passes_while_its_start_record_syncs_never_runs(
        tmp_path: Path) -> None:
    paid: list[int] = []

    def pay(amount: int) -> str:
        paid.append(amount)
        return "paid"

    sink = SyncPastDeadline(tmp_path / "audit")
    with Runtime(policy=_pay_policy(tmp_path), audit=sink, pool_size=0) as rt, \
            rt.session(tools={"pay": pay}) as session:
        sink.armed = True
        outputs = [session.exec(CALL).stdout.strip() for _ in range(4)]
        sink.armed = False
    sink.close()
    records = _call_records(tmp_path / "audit", "tool.pay")
    assert paid == [], outputs
    assert [(r["event"], r["outcome"], r.get("limit")) for r in records] == \
        [("host.call", "abandoned", "tool_timeout_s")] * 4


@pytest.mark.parametrize("call", [CALL, LM_CALL, BATCH_CALL, RLM_CALL],
                         ids=["tool", "llm_query", "llm_query_batched", "rlm_query"])
def test_a_call_interrupted_while_its_start_record_syncs_never_runs(
        tmp_path: Path, call: str) -> None:
    """Session durability: the interrupt does not sync, so nothing hands the GIL over.
    (An ``rlm_query`` so run starts a child session, whose root model is asked.)"""
    paid: list[int] = []

    def pay(amount: int) -> str:
        paid.append(amount)
        return "paid"

    lm = ScriptedLM(lambda _prompt: "FINAL(spent)")
    sink = InterruptWhileSyncing(tmp_path / "audit", "interrupt")
    function = FUNCTIONS[call]
    with Runtime(policy=_pay_policy(tmp_path), lm=lm, audit=sink, pool_size=0,
                 durability="session") as rt, rt.session(tools={"pay": pay}) as session:
        sink.armed = True
        for _ in range(3):
            sink.session = session
            session.exec(call)
    sink.close()
    records = _call_records(tmp_path / "audit", function)
    children = [r for r in iter_records(tmp_path / "audit")
                if r["event"] == "session.create" and r["parent"] is not None]
    assert (paid, lm.prompts, children) == ([], [], [])
    assert [(r["event"], r["outcome"], r.get("limit")) for r in records] == \
        [("host.call", "abandoned", "interrupt")] * 3


@pytest.mark.parametrize("durability", ["cell", "session"])
def test_a_call_whose_session_closes_while_its_start_record_syncs_never_runs(
        tmp_path: Path, durability: str) -> None:
    """Held: the close does enough I/O after the cut that the waiter marks the call
    abandoned first (the worker's check is the same as above, so it is luck)."""
    paid: list[int] = []

    def pay(amount: int) -> str:
        paid.append(amount)
        return "paid"

    sink = InterruptWhileSyncing(tmp_path / "audit", "close")
    with Runtime(policy=_pay_policy(tmp_path), audit=sink, pool_size=0,
                 durability=durability) as rt:  # type: ignore[arg-type]
        sink.armed = True
        for _ in range(3):
            session = rt.session(tools={"pay": pay})
            sink.session = session
            with pytest.raises(Exception, match="closed"):
                session.exec(CALL)
            session.close()
    sink.close()
    records = _call_records(tmp_path / "audit", "tool.pay")
    assert paid == []
    assert [(r["event"], r["outcome"], r.get("limit")) for r in records] == \
        [("host.call", "abandoned", "close")] * 3


class FsyncFailsPastDeadline(StartSyncLog):
    """A start record's sync fails (``os.fsync`` raises EIO, the log fails for good) and
    reports it only after the call's tool deadline: a dying disk's fsync that hangs, then
    fails."""

    def __init__(self, directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        super().__init__(directory)
        self.monkeypatch = monkeypatch

    def start_synced(self) -> None:
        def eio(fd: int) -> None:
            raise OSError(5, "Input/output error")

        with self.monkeypatch.context() as patched:
            patched.setattr(os, "fsync", eio)
            with pytest.raises(AuditWriteError):
                self.log.sync()
        time.sleep(max(0.0, self.appended + TOOL_TIMEOUT_S + 0.2 - time.monotonic()))
        raise AuditWriteError("the audit log failed earlier and refuses further writes: EIO")


def test_a_start_record_whose_fsync_fails_past_the_deadline_refunds_the_call(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/audit-format.md: a log that cannot take the start record (append or fsync
    fails) means the reservation is refunded, the call never runs, the session stops
    with AuditWriteError; the ledger's slots return to 0."""
    paid: list[int] = []

    def pay(amount: int) -> str:
        paid.append(amount)
        return "paid"

    sink = FsyncFailsPastDeadline(tmp_path / "audit", monkeypatch)
    rt = Runtime(policy=_pay_policy(tmp_path), audit=sink, pool_size=0)
    session = rt.session(tools={"pay": pay})
    try:
        sink.armed = True
        with pytest.raises(AuditWriteError):
            session.exec(CALL)
        time.sleep(0.3)   # the call's thread has ended
        usage = session.ledger.snapshot()["tree"]
    finally:
        for closing in (session.close, rt.close, sink.close):
            with contextlib.suppress(AuditWriteError):
                closing()
    assert paid == []
    assert (usage["calls"], usage["in_flight"]) == (0, 0), usage


class Vandal:
    """An observer that mutates every ``session.create`` record it is handed."""

    def __init__(self) -> None:
        self.mutated = 0

    def record(self, record: Mapping[str, Any]) -> None:
        if record.get("event") == "session.create":
            self.mutated += 1
            record["limits"]["memory_mb"] = 1
            record["limits"]["cell_timeout_s"] = 1e9
            record["properties"].append("user_space_kernel")
            record["properties"].sort()
            self.mutated += 1

    def audit_synced(self, seconds: float) -> None:
        pass

    def audit_failed(self) -> None:
        pass


def test_a_record_consumer_mutating_session_create_does_not_change_later_records(
        tmp_path: Path) -> None:
    """Held: the cached limits and property names are copied into each record."""
    vandal = Vandal()
    with Runtime(policy=_pay_policy(tmp_path), audit_dir=tmp_path / "audit", pool_size=0,
                 observers=[vandal]) as rt:
        for _ in range(3):
            rt.session().close()
        limits = rt.policy.limits.model_dump()
        names = sorted(str(p) for p in rt.backend("process").properties())
    creates = [r for r in iter_records(tmp_path / "audit") if r["event"] == "session.create"]
    assert vandal.mutated == 6   # each of the three, to its end (it was not switched off)
    assert [(r["limits"], r["properties"]) for r in creates] == [(limits, names)] * 3


class _Started:
    """A sandbox as ``_record_start`` reads it: its identity and its backend's report."""

    def __init__(self, backend: str, properties: frozenset[IsolationProperty]) -> None:
        self.info = SandboxInfo(backend=backend, sandbox_id=backend)
        self.properties = properties


class _Creates:
    """A scope noting each session.create whose property names are not its sandbox's."""

    def __init__(self, names: dict[str, list[str]]) -> None:
        self.names = names
        self.wrong: list[tuple[str, list[str]]] = []

    def event(self, name: str, **attributes: Any) -> None:
        backend = attributes["sandbox"]["backend"]
        if attributes["properties"] != self.names[backend]:
            self.wrong.append((backend, attributes["properties"]))


def test_concurrent_starts_on_two_backends_each_record_their_own_properties(
        tmp_path: Path) -> None:
    """One runtime, sessions starting at once on two backends (a daemon tenant whose policy
    allows both, ``allowed_backends``): each session.create must name its own sandbox's
    properties. ``_record_start`` is driven directly, as each start calls it, with two
    backends' reports; the race shows at the default switch interval too (57 wrong
    records in 93 000 here), a short one only finds it sooner."""
    weak = frozenset({IsolationProperty.SECCOMP})
    strong = weak | {IsolationProperty.USER_SPACE_KERNEL, IsolationProperty.NETWORK_NONE}
    creates = _Creates({"weak": sorted(map(str, weak)), "strong": sorted(map(str, strong))})
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_yaml("process"))
    interval = sys.getswitchinterval()
    with Runtime(policy=policy, audit_dir=tmp_path / "audit", pool_size=0,
                 durability="session") as rt:
        ends = time.monotonic() + 3

        def start(sandbox: _Started) -> None:
            while time.monotonic() < ends and not creates.wrong:
                rt._record_start(creates, sandbox, False, [])  # type: ignore[arg-type]

        starters = [threading.Thread(target=start, args=(_Started(name, props),))
                    for name, props in (("weak", weak), ("strong", strong))]
        sys.setswitchinterval(1e-5)
        try:
            for starter in starters:
                starter.start()
            for starter in starters:
                starter.join()
        finally:
            sys.setswitchinterval(interval)
    assert creates.wrong == []


def test_a_tool_raising_system_exit_is_settled_and_recorded(tmp_path: Path) -> None:
    """A host tool that exits on the arguments model code chose (argparse, a library's
    ``sys.exit``): the call ends with exactly one outcome record, its slot frees, and
    the host program is not asked to exit."""

    def parse(argv: str) -> str:
        raise SystemExit(2)   # what argparse does with arguments it rejects

    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_yaml("process", rules=[
        {"id": "permit-parse", "effect": "permit", "function": "tool.parse"}]))
    escaped: list[BaseException] = []
    with Runtime(policy=policy, audit_dir=tmp_path / "audit", pool_size=0) as rt, \
            rt.session(tools={"parse": parse}) as session:
        try:
            session.exec("try:\n    parse('--bad')\nexcept Exception as exc:\n    print(exc)")
        except BaseException as exc:   # what reached the host is the finding
            escaped.append(exc)
        usage = session.ledger.snapshot()["tree"]
    outcomes = _call_records(tmp_path / "audit", "tool.parse")
    assert escaped == []
    assert [r["outcome"] for r in outcomes] == ["error"]
    assert usage["in_flight"] == 0
