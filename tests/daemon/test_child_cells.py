"""A tenant's cell cap binds ``rlm_query`` children without deadlocking a tree
(``rlmbox/daemon/child_cells.py``): a child takes a free slot or its parent's lane."""

from __future__ import annotations

import threading

from rlmbox.daemon.admission import Admission
from rlmbox.daemon.child_cells import ChildCells
from rlmbox.daemon.limits import DaemonLimits


def cells(cap: int) -> tuple[Admission, ChildCells]:
    admission = Admission(DaemonLimits(cells_per_tenant=cap), audit_bytes=lambda _t: 0)
    return admission, ChildCells(lambda: admission.try_take_cell("alice"))


def test_a_child_takes_a_free_slot_and_gives_it_back() -> None:
    admission, children = cells(2)
    root = admission.take_cell("alice")
    with children.slot("root"):
        assert admission.try_take_cell("alice") is None   # root + child: the cap of 2
    again = admission.try_take_cell("alice")
    assert again is not None
    again.release()
    root.release()


def test_siblings_share_their_parents_lane_one_at_a_time() -> None:
    admission, children = cells(1)
    root = admission.take_cell("alice")
    inside = threading.Event()
    second_in = threading.Event()
    with children.slot("root"):
        inside.set()

        def sibling() -> None:
            with children.slot("root"):
                second_in.set()

        thread = threading.Thread(target=sibling)
        thread.start()
        assert not second_in.wait(0.3), "a sibling ran while the lane was held"
    assert second_in.wait(5), "the sibling never got the lane"
    thread.join(5)
    root.release()


def test_a_grandchild_runs_in_its_parents_lane_while_the_parent_holds_the_root_lane() -> None:
    admission, children = cells(1)
    root = admission.take_cell("alice")
    done = threading.Event()

    def grandchild() -> None:
        with children.slot("child"):   # the child's own lane: free though the cap is full
            done.set()

    with children.slot("root"):   # the child's cell, in the root's lane
        thread = threading.Thread(target=grandchild)
        thread.start()
        assert done.wait(5), "a grandchild deadlocked behind its parent's cell"
        thread.join(5)
    root.release()


def test_a_lane_lives_only_while_a_child_holds_or_awaits_it() -> None:
    admission, children = cells(1)
    root = admission.take_cell("alice")   # the cap is full: children use the lane
    with children.slot("root"):
        assert children.lanes_in_use() == 1
    assert children.lanes_in_use() == 0
    root.release()
