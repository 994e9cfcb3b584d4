"""The driver's book of the slots a node's ``rlm_query`` children hold
(``rlmbox/cluster/child_slots.py``), on the daemon's real admission: taken through the
tenant's gate, given back by ticket, and all given back when the root cell's stream ends,
a child still waiting its turn then included. No Ray: the node's side of it runs in
``test_child_slots_on_cluster.py``."""

from __future__ import annotations

import json
import threading
from typing import Any

from rlmbox.cluster.cell_wire import CallEvent, DriverAnswer
from rlmbox.cluster.child_slots import ChildSlots
from rlmbox.daemon.admission import Admission, Slot, TenantGate
from rlmbox.daemon.limits import DaemonLimits

WAIT_S = 10.0


def admitted(cap: int) -> tuple[Admission, ChildSlots]:
    admission = Admission(DaemonLimits(cells_per_tenant=cap), audit_bytes=lambda _t: 0)
    return admission, ChildSlots(TenantGate(admission, "alice"))


def take(slots: ChildSlots, parent: str = "s-root") -> DriverAnswer:
    return slots.run(CallEvent(1, "gate", "take", {"parent": parent}))


def release(slots: ChildSlots, ticket: object) -> DriverAnswer:
    return slots.run(CallEvent(2, "gate", "release", {"ticket": ticket}))


def free_slot(admission: Admission) -> bool:
    slot: Slot | None = admission.try_take_cell("alice")
    if slot is None:
        return False
    slot.release()
    return True


def test_a_taken_slot_counts_until_its_ticket_comes_back() -> None:
    admission, slots = admitted(2)
    root = admission.take_cell("alice")
    answer = take(slots)
    assert answer.ok
    assert answer.value_json is not None
    assert not free_slot(admission)   # root + child: the cap of 2
    assert release(slots, json.loads(answer.value_json)).ok
    assert free_slot(admission)
    root.release()


def test_a_child_waiting_for_its_parents_lane_when_the_root_cell_ends_takes_nothing() -> None:
    admission, slots = admitted(2)
    root = admission.take_cell("alice")
    first = take(slots)             # the free slot
    second = take(slots)            # the root's lane
    assert first.ok
    assert second.ok
    waiting: list[DriverAnswer] = []
    third = threading.Thread(target=lambda: waiting.append(take(slots)))
    third.start()                   # waits for the lane the second holds
    third.join(0.2)
    assert third.is_alive()
    slots.close()                   # the root cell's stream ended
    third.join(WAIT_S)
    assert not third.is_alive()
    assert not waiting[0].ok
    assert waiting[0].error_type == "DriverUnreachable"
    assert free_slot(admission)     # only the root's slot is held
    root.release()
    assert not take(slots).ok       # and none is taken after the end
    assert free_slot(admission)


def test_a_release_of_no_held_ticket_changes_nothing() -> None:
    admission, slots = admitted(2)
    root = admission.take_cell("alice")
    answer = take(slots)
    assert answer.ok
    for ticket in (999, -1, "1", True, None):
        assert release(slots, ticket).ok == (type(ticket) is int)
    assert not free_slot(admission)
    slots.close()
    assert free_slot(admission)
    root.release()


def test_a_call_it_does_not_know_is_an_error_answer() -> None:
    _, slots = admitted(2)
    for name, args in (("take", {}), ("take", {"parent": 3}), ("steal", {"parent": "p"})):
        answer = slots.run(CallEvent(1, "gate", name, args))
        assert not answer.ok
        assert answer.error_type == "ValueError"


class FailingGate:
    """A gate whose ``child_work`` raises: a bug, or a refusal some gate may make."""

    def enter(self, session_id: str, parent: str | None) -> None:
        return None

    def leave(self, session_id: str) -> None:
        return None

    def child_work(self, parent: str) -> Any:
        raise RuntimeError("the gate failed")


def test_a_gate_that_fails_is_an_error_answer_not_a_dead_thread() -> None:
    """The node's child waits for an answer: a failure must be one (review s15a)."""
    answer = take(ChildSlots(FailingGate()))
    assert (answer.ok, answer.error_type, answer.message) == (
        False, "RuntimeError", "the gate failed")
