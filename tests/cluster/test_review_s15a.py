"""Hostile review s15a, change 2 (efd5500): ``rlm_query`` children on a node take the
tenant's cell slots from the daemon's gate on the driver (``cluster/child_slots.py``).

The promise (docs/scale-out.md, the rlm_query bullet; docs/daemon.md Limits item 2):
``--max-cells-per-tenant`` binds the children, a tree cannot deadlock on its own cells, a
child's wait is bounded, children end by their caller's deadline, and nothing is kept
when the root cell ends or its session closes.

The driver side runs in this process: a ``RayRuntime`` with the daemon's real gate
(``TenantGate`` over ``Admission``), the root cell's slot taken as the daemon takes it, so
the tenant's counters and lanes are read directly. The children's code is a scripted
child model's one cell, chosen by the prompt (the child's ``context``):
``deep:P`` calls ``rlm_query(P)``, ``sleep:S`` sleeps S seconds, anything else answers.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from live_processes import in_cgroup_named

from rlmbox.audit.reader import iter_records
from rlmbox.daemon.admission import Admission, TenantGate
from rlmbox.daemon.limits import DaemonLimits
from rlmbox.errors import RlmboxError
from rlmbox.lm.scripted import ScriptedLM
from rlmbox.runtime.results import ExecResult
from tests.cluster.test_child_slots import FailingGate
from tests.conftest import write_policy

CHILD_CELL = """```repl
import time
kind, _, arg = context.partition(':')
if kind == 'deep':
    FINAL('deep(' + rlm_query(arg) + ')')
elif kind == 'sleep':
    time.sleep(float(arg))
    FINAL('slept')
else:
    FINAL('done')
```"""
CELL_TIMEOUT_S = 40
SETTLED_WITHIN_S = 20.0


class Tenant:
    """A driver-side gate for tenant alice with a cap of ``cells`` and its runtime."""

    def __init__(self, make_ray_runtime: Callable[..., Any], tmp_path: Path,
                 cells: int = 1) -> None:
        self.admission = Admission(DaemonLimits(cells_per_tenant=cells, cells=cells + 1),
                                   lambda tenant: 0)
        self.gate = TenantGate(self.admission, "alice")
        policy = write_policy(
            tmp_path, isolation={"backend": "process"},
            limits={"cell_timeout_s": CELL_TIMEOUT_S},
            rules=[{"id": f"permit-{fn}", "effect": "permit", "function": fn}
                   for fn in ("rlm_query", "rlm_query_batched")],
            budgets={"tree": {"calls": 50, "max_depth": 2, "max_concurrent": 8}})
        self.audit_dir = tmp_path / "cluster-audit-0"
        self.runtime = make_ray_runtime(policy, lm=functools.partial(ScriptedLM,
                                                                     default=CHILD_CELL),
                                        tenant="alice", child_gate=self.gate)

    def cells(self) -> int:
        """Slots the tenant holds now (roots and children)."""
        with self.admission._lock:
            return self.admission._cells.get("alice", 0)

    def lanes(self) -> int:
        return self.gate._children.lanes_in_use()

    def run(self, session: Any, code: str, timeout: float | None = None
            ) -> ExecResult | RlmboxError:
        """One root cell as the daemon runs it: its own slot first."""
        slot = self.admission.take_cell("alice")
        try:
            result: ExecResult | RlmboxError = session.exec(code, timeout=timeout)
        except RlmboxError as exc:
            result = exc
        finally:
            slot.release()
        return result

    def settled(self) -> None:
        """Every slot and lane given back, within a bound."""
        deadline = time.monotonic() + SETTLED_WITHIN_S
        while (self.cells(), self.lanes()) != (0, 0):
            assert time.monotonic() < deadline, (self.cells(), self.lanes())
            time.sleep(0.2)

    def start(self, session: Any, code: str
              ) -> tuple[threading.Thread, list[ExecResult | RlmboxError]]:
        """A root cell run on a thread of its own; its outcome lands in the list."""
        outcome: list[ExecResult | RlmboxError] = []
        cell = threading.Thread(target=lambda: outcome.append(self.run(session, code)))
        cell.start()
        return cell, outcome

    def first_child_started(self) -> None:
        deadline = time.monotonic() + 30
        while not self.child_sandboxes():
            assert time.monotonic() < deadline
            time.sleep(0.2)

    def child_sandboxes(self) -> list[str]:
        """The sandbox ids of every child session the nodes started (their logs)."""
        found = []
        for log in self.audit_dir.glob("**/*.jsonl"):
            for record in iter_records(log):
                if record.get("event") == "session.create" and record.get("depth", 0) >= 1:
                    found.append(record["sandbox"]["id"])
        return found


@pytest.fixture
def tenant(make_ray_runtime: Callable[..., Any], tmp_path: Path) -> Tenant:
    return Tenant(make_ray_runtime, tmp_path)


def _still_running(sandbox_ids: list[str]) -> list[str]:
    return [sid for sid in sandbox_ids if in_cgroup_named(sid)]


# -- nesting under a cap of one -------------------------------------------------------------


def test_depth_two_children_under_a_cap_of_one_finish_and_give_every_slot_back(
        tenant: Tenant) -> None:
    """A batched call of two children that each call ``rlm_query`` again: the grandchild
    waits on its parent's lane, which nothing else holds; no deadlock, an answer each."""
    with tenant.runtime.session() as session:
        started = time.monotonic()
        result = tenant.run(session, "print(rlm_query_batched(['deep:leaf', 'deep:leaf']))")
        assert isinstance(result, ExecResult), result
        assert result.status == "ok", result.error
        assert result.stdout.strip() == "['deep(done)', 'deep(done)']"
        assert time.monotonic() - started < CELL_TIMEOUT_S
    tenant.settled()


def test_rlm_query_from_a_background_thread_of_the_cell_is_served_and_leaves_nothing(
        tenant: Tenant) -> None:
    code = ("import threading\nout = []\n"
            "t = threading.Thread(target=lambda: out.append(rlm_query('deep:leaf')))\n"
            "t.start(); t.join(); print(out)")
    with tenant.runtime.session() as session:
        result = tenant.run(session, code)
        assert isinstance(result, ExecResult), result
        assert result.status == "ok", result.error
        assert result.stdout.strip() == "['deep(done)']"
    tenant.settled()


def test_many_sessions_of_one_tenant_with_nested_children_neither_deadlock_nor_leak(
        make_ray_runtime: Callable[..., Any], tmp_path: Path) -> None:
    """Cap two; four sessions of the tenant each run, at once and twice over, a cell whose
    two children each call ``rlm_query`` again: every cell is answered or refused for the
    cap (429), none hangs, and every slot and lane comes back."""
    from rlmbox.errors import DaemonError

    tenant = Tenant(make_ray_runtime, tmp_path, cells=2)
    sessions = [tenant.runtime.session() for _ in range(4)]
    outcomes: list[str] = []

    def run(session: Any) -> None:
        for _ in range(2):
            try:
                result = tenant.run(session, "print(rlm_query_batched(['deep:leaf'] * 2))")
            except DaemonError as exc:
                outcomes.append(exc.type or "DaemonError")
                time.sleep(0.5)
                continue
            outcomes.append(result.stdout.strip() if isinstance(result, ExecResult)
                            and result.status == "ok" else repr(result))

    threads = [threading.Thread(target=run, args=(session,)) for session in sessions]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(CELL_TIMEOUT_S * 3)
    assert not any(thread.is_alive() for thread in threads)
    assert time.monotonic() - started < CELL_TIMEOUT_S * 2
    for session in sessions:
        session.close()
    assert len(outcomes) == 8
    assert set(outcomes) <= {"['deep(done)', 'deep(done)']", "TooManyCells"}, outcomes
    assert "['deep(done)', 'deep(done)']" in outcomes
    tenant.settled()


# -- the root cell ends under its children --------------------------------------------------


def test_a_root_cell_timing_out_under_waiting_children_ends_them_all_and_keeps_no_slot(
        tenant: Tenant) -> None:
    """Three children of 30 s each under a cap of one (one runs, two wait for the root's
    lane), the root cell's wall time 4 s: the cell ends near its deadline, not after its
    children; every slot is back, and no child sandbox still runs (a child that ran on
    would be a cell the tenant's cap no longer counts)."""
    with tenant.runtime.session() as session:
        started = time.monotonic()
        result = tenant.run(session, "rlm_query_batched(['sleep:30'] * 3)", timeout=4)
        took = time.monotonic() - started
        assert isinstance(result, ExecResult), result
        assert result.status != "ok"
        assert took < 20, took
        tenant.settled()
        deadline = time.monotonic() + SETTLED_WITHIN_S
        while running := _still_running(tenant.child_sandboxes()):
            assert time.monotonic() < deadline, f"child sandboxes still run: {running}"
            time.sleep(0.5)
        # and the tenant is served at once: one cell of one child
        again = tenant.run(session, "print(rlm_query('leaf'))")
        assert isinstance(again, ExecResult), again
        assert again.status == "ok", again.error
        assert again.stdout.strip() == "done"
    tenant.settled()


def test_an_interrupted_root_cell_ends_its_children_and_keeps_no_slot(tenant: Tenant) -> None:
    with tenant.runtime.session() as session:
        cell, outcome = tenant.start(session, "rlm_query_batched(['sleep:30'] * 3)")
        tenant.first_child_started()
        time.sleep(1.0)
        assert session.interrupt()
        cell.join(30)
        assert not cell.is_alive()
        assert outcome
        assert not isinstance(outcome[0], ExecResult) or outcome[0].status != "ok", outcome
        tenant.settled()
        deadline = time.monotonic() + SETTLED_WITHIN_S
        while running := _still_running(tenant.child_sandboxes()):
            assert time.monotonic() < deadline, f"child sandboxes still run: {running}"
            time.sleep(0.5)
        again = tenant.run(session, "print(rlm_query('leaf'))")
        assert isinstance(again, ExecResult), again
        assert again.status == "ok", again.error
    tenant.settled()


def test_closing_the_session_under_running_children_ends_them_and_keeps_no_slot(
        tenant: Tenant) -> None:
    with tenant.runtime.session() as session:
        cell, _ = tenant.start(session, "rlm_query_batched(['deep:sleep:30'] * 2)")
        deadline = time.monotonic() + 30
        while len(tenant.child_sandboxes()) < 2:   # a child and its grandchild started
            assert time.monotonic() < deadline
            time.sleep(0.2)
        session.close()
        cell.join(30)
        assert not cell.is_alive()
    tenant.settled()
    deadline = time.monotonic() + SETTLED_WITHIN_S
    while running := _still_running(tenant.child_sandboxes()):
        assert time.monotonic() < deadline, f"child sandboxes still run: {running}"
        time.sleep(0.5)


def test_a_child_started_by_a_thread_that_outlived_its_cell_is_bound_by_the_cap(
        tenant: Tenant) -> None:
    """Cell one leaves a thread behind that calls ``rlm_query`` two seconds later, between
    cells; cell two (``pass``) runs at three. Whenever a child of the tree runs, the
    tenant's gate must count it: a child running while the tenant holds no slot is a
    cell the cap does not see."""
    with tenant.runtime.session() as session:
        first = tenant.run(session, "import threading, time\n"
                                    "def later():\n    time.sleep(2)\n"
                                    "    print(rlm_query('sleep:12'))\n"
                                    "threading.Thread(target=later, daemon=True).start()")
        assert isinstance(first, ExecResult), first
        assert first.status == "ok", first.error
        time.sleep(3)
        second = tenant.run(session, "pass")
        assert isinstance(second, ExecResult), second
        unseen = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            running = _still_running(tenant.child_sandboxes())
            if running and tenant.cells() == 0:
                unseen.append(running)
                break
            time.sleep(0.3)
        assert unseen == [], "a child ran while the tenant's gate counted no cell"
        # what held: the stray call is not served between cells nor by the next cell
        assert tenant.child_sandboxes() == []
    tenant.settled()


def test_a_tree_at_its_tenants_cap_leaves_the_daemons_other_slot_to_another_tenant(
        tenant: Tenant) -> None:
    """Alice's cap is one, the daemon's two: while her root cell's children run (on her
    root's lane), bob's cell gets the daemon's second slot."""
    with tenant.runtime.session() as session:
        cell, outcome = tenant.start(session, "rlm_query_batched(['sleep:3'] * 2)")
        tenant.first_child_started()
        bob = tenant.admission.take_cell("bob")   # raises DaemonError if starved
        bob.release()
        cell.join(60)
        assert outcome
        assert isinstance(outcome[0], ExecResult), outcome
        assert outcome[0].status == "ok", outcome[0].error
    tenant.settled()


def test_a_node_actor_killed_under_running_children_keeps_no_slot(tenant: Tenant) -> None:
    import ray

    with tenant.runtime.session() as session:
        cell, outcome = tenant.start(session, "rlm_query_batched(['sleep:30'] * 3)")
        tenant.first_child_started()
        time.sleep(1.0)
        ray.kill(tenant.runtime._nodes[session.node_id], no_restart=True)
        cell.join(30)
        assert not cell.is_alive()
        assert outcome
        assert not isinstance(outcome[0], ExecResult), outcome
    tenant.settled()


# -- the driver's gate fails ----------------------------------------------------------------


def test_a_failing_driver_gate_fails_the_rlm_query_call_promptly(
        make_ray_runtime: Callable[..., Any], tmp_path: Path) -> None:
    policy = write_policy(
        tmp_path, isolation={"backend": "process"}, limits={"cell_timeout_s": 15},
        rules=[{"id": "permit-rlm", "effect": "permit", "function": "rlm_query"}])
    runtime = make_ray_runtime(policy, lm=functools.partial(ScriptedLM, default=CHILD_CELL),
                               tenant="alice", child_gate=FailingGate())
    with runtime.session() as session:
        started = time.monotonic()
        result = session.exec("try:\n    rlm_query('leaf')\nexcept Exception as e:\n"
                              "    print(type(e).__name__)")
        took = time.monotonic() - started
    assert result.status == "ok", result.error
    assert took < 10, f"the call was answered only at the cell's wall time ({took:.1f} s)"


# -- no daemon: unchanged -------------------------------------------------------------------


def test_an_embedded_ray_runtime_without_a_gate_runs_its_children_side_by_side(
        make_ray_runtime: Callable[..., Any], tmp_path: Path) -> None:
    """No ``child_gate`` (no daemon): the node's children ask nothing of the driver and
    run at once, as before the change: three children of 3 s end in well under 9 s."""
    policy = write_policy(
        tmp_path, isolation={"backend": "process"}, limits={"cell_timeout_s": CELL_TIMEOUT_S},
        rules=[{"id": "permit-rlm", "effect": "permit", "function": "rlm_query_batched"}],
        budgets={"tree": {"calls": 50, "max_depth": 1, "max_concurrent": 8}})
    runtime = make_ray_runtime(policy, lm=functools.partial(ScriptedLM, default=CHILD_CELL))
    with runtime.session() as session:
        started = time.monotonic()
        result = session.exec("print(rlm_query_batched(['sleep:3'] * 3))")
        took = time.monotonic() - started
    assert result.status == "ok", result.error
    assert result.stdout.strip() == "['slept', 'slept', 'slept']"
    assert took < 8.5, took


# -- the same through a real ``rlmbox serve --ray`` -----------------------------------------


@pytest.fixture(scope="module")
def serve(ray_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.cluster.test_serve_on_ray import serving_rlm_children

    with serving_rlm_children(tmp_path_factory.mktemp("review-s15a"), ray_cluster.address,
                              CHILD_CELL, cells_per_tenant=1, cell_timeout_s=CELL_TIMEOUT_S,
                              max_depth=2) as daemon:
        yield daemon


def _served_within(serve: Any, sid: str, code: str) -> ExecResult:
    """The cell's result, retried while the tenant's cap refuses it (a slot still held
    shows as a 429 past the bound)."""
    from rlmbox.errors import DaemonError

    deadline = time.monotonic() + SETTLED_WITHIN_S
    with serve.client("alice") as alice:
        while True:
            try:
                result: ExecResult = alice.exec(sid, code)
            except DaemonError as exc:
                refused = exc.type
            else:
                return result
            assert refused == "TooManyCells", refused
            assert time.monotonic() < deadline, "the tenant's slot was never given back"
            time.sleep(0.5)


def test_served_a_root_cell_timing_out_under_nested_waiting_children_keeps_no_slot(
        serve: Any) -> None:
    """Through the daemon, cap one: a root cell of 4 s over two children that each call a
    grandchild of 30 s; after it, the tenant's next cell (with a child) is served."""
    with serve.client("alice") as alice:
        sid = alice.create_session()["id"]
        started = time.monotonic()
        result = alice.exec(sid, "rlm_query_batched(['deep:sleep:30'] * 2)", timeout=4)
        assert result.status != "ok"
        assert time.monotonic() - started < 20
    again = _served_within(serve, sid, "print(rlm_query('leaf'))")
    assert again.status == "ok", again.error
    assert again.stdout.strip() == "done"
    with serve.client("alice") as alice:
        alice.close_session(sid)


def test_served_an_interrupted_root_cell_under_children_keeps_no_slot(serve: Any) -> None:
    with serve.client("alice") as alice, serve.client("alice") as other:
        sid = alice.create_session()["id"]
        outcome: list[Any] = []
        cell = threading.Thread(target=lambda: outcome.append(
            alice.exec(sid, "rlm_query_batched(['sleep:30'] * 3)")))
        cell.start()
        time.sleep(4)   # the first child runs, two wait for the root's lane
        assert other.interrupt(sid)
        cell.join(30)
        assert not cell.is_alive()
        assert outcome
        assert outcome[0].status != "ok"
    again = _served_within(serve, sid, "print(rlm_query_batched(['leaf'] * 2))")
    assert again.status == "ok", again.error
    assert again.stdout.strip() == "['done', 'done']"
    with serve.client("alice") as alice:
        alice.close_session(sid)
