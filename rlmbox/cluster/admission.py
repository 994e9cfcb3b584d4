"""Admission by Ray: one session = one ``rlmbox_slot`` held in a placement group.

A node offers as many sessions as it declares ``rlmbox_slot`` resources
(``ray start --resources='{"rlmbox_slot": 8}'``). A placement group of one bundle
``{"rlmbox_slot": 1}`` reserves a slot on some node: Ray picks the node (bin-packing,
spreading), queues the request while every slot is taken and releases the slot when the
group is removed. A group costs no process (unlike an actor per slot), so holding one per
session is cheap; the wait is bounded by the caller and ends in ``ClusterFull``.
"""

from __future__ import annotations

from ray.util.placement_group import (
    PlacementGroup,
    placement_group,
    placement_group_table,
    remove_placement_group,
)

from rlmbox.errors import ClusterFull

SLOT = "rlmbox_slot"


class Slot:
    """A reserved session slot on one node; ``release`` frees it (idempotent)."""

    def __init__(self, group: PlacementGroup, node_id: str) -> None:
        self._group: PlacementGroup | None = group
        self.node_id = node_id

    def release(self) -> None:
        group, self._group = self._group, None
        if group is not None:
            remove_placement_group(group)


def reserve_slot(resource: str, timeout_s: float) -> Slot:
    """Waits up to ``timeout_s`` for one unit of ``resource`` (default ``rlmbox_slot``)
    free on any node.

    Raises:
        ClusterFull: no node had a free slot in time (the request is withdrawn).
    """
    group = placement_group([{resource: 1}])
    if not group.wait(timeout_seconds=timeout_s):
        remove_placement_group(group)
        raise ClusterFull(
            f"no cluster node had a free {resource} within {timeout_s:g} s: close sessions, "
            "add nodes (or slots per node), or raise admission_timeout_s")
    node_id = placement_group_table(group)["bundles_to_node_id"][0]
    return Slot(group, str(node_id))
