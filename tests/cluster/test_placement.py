"""Ray places sessions: spread over the nodes with capacity, bounded wait when full."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from rlmbox.errors import ClusterFull
from tests.cluster.conftest import NODES, SLOTS_PER_NODE


def test_sessions_spread_over_every_node_and_run_there(
        make_ray_runtime: Callable[..., Any]) -> None:
    rt = make_ray_runtime()
    sessions = [rt.session() for _ in range(NODES * SLOTS_PER_NODE)]
    try:
        per_node: dict[str, int] = {}
        for session in sessions:
            per_node[session.node_id] = per_node.get(session.node_id, 0) + 1
        assert len(per_node) == NODES
        assert set(per_node.values()) == {SLOTS_PER_NODE}
        results = [s.exec(f"x = {i}\nprint(x * 2)") for i, s in enumerate(sessions)]
        assert [r.stdout for r in results] == [f"{i * 2}\n" for i in range(len(sessions))]
    finally:
        for session in sessions:
            session.close()


def test_a_full_cluster_makes_the_next_session_wait_then_fail_clearly(
        make_ray_runtime: Callable[..., Any]) -> None:
    rt = make_ray_runtime(admission_timeout_s=2.0)
    sessions = [rt.session() for _ in range(NODES * SLOTS_PER_NODE)]
    try:
        started = time.monotonic()
        with pytest.raises(ClusterFull, match="no cluster node had a free rlmbox_slot "
                                              "within 2 s"):
            rt.session()
        assert 1.9 <= time.monotonic() - started < 10
    finally:
        for session in sessions:
            session.close()


def test_a_waiting_session_starts_when_a_slot_frees(
        make_ray_runtime: Callable[..., Any]) -> None:
    rt = make_ray_runtime(admission_timeout_s=20.0)
    sessions = [rt.session() for _ in range(NODES * SLOTS_PER_NODE)]
    freed = sessions.pop()
    timer = threading.Timer(1.0, freed.close)
    timer.start()
    try:
        started = time.monotonic()
        with rt.session() as late:
            waited = time.monotonic() - started
            assert late.exec("print('in')").stdout == "in\n"
        assert waited >= 0.9
    finally:
        timer.join()
        for session in sessions:
            session.close()
