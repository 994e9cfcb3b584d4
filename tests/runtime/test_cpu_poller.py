"""The CPU time of every sandbox is watched by one thread of the host, not one each.

Why: a thread per sandbox waking ten times a second cost the host process 15% of a core
for 64 idle process sessions on the development machine (each wake-up takes the GIL, and
in the daemon it competes with every tenant's requests). ``cpu_seconds`` must still bind
each sandbox (tests/security/test_cpu_seconds_tree.py) and a busy one still yields its
weight (tests/runtime/test_cpu_weight.py).
"""

from __future__ import annotations

import threading
import time

import pytest

from rlmbox.runtime.runtime import Runtime
from rlmbox.sandboxes.cpu_poller import CpuPoller
from rlmbox.sandboxes.process.cgroups import cgroup_version


def _watch_threads() -> list[str]:
    return [t.name for t in threading.enumerate()
            if t.name.startswith(("cpu-", "rlmbox-cpu"))]


@pytest.mark.skipif(cgroup_version() == 0, reason="no cgroups here (they need root)")
def test_many_sessions_are_watched_by_one_thread(runtime: Runtime) -> None:
    sessions = [runtime.session() for _ in range(6)]
    try:
        for session in sessions:
            assert session.exec("x = 1").ok
        assert len(_watch_threads()) == 1, _watch_threads()
    finally:
        for session in sessions:
            session.close()


def test_a_watch_is_ticked_until_it_says_done_and_a_stopped_one_is_not() -> None:
    poller = CpuPoller(interval_s=0.01, name="rlmbox-cpu-test")
    ticks = {"done": 0, "stopped": 0}

    def done_after_three() -> bool:
        ticks["done"] += 1
        return ticks["done"] < 3

    def counting() -> bool:
        ticks["stopped"] += 1
        return True

    poller.watch(done_after_three)
    stopped = poller.watch(counting)
    deadline = time.monotonic() + 5
    while ticks["done"] < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    stopped.stop()
    seen = ticks["stopped"]
    time.sleep(0.1)
    assert ticks == {"done": 3, "stopped": seen}


def test_a_watch_that_raises_keeps_being_ticked_and_spares_the_others() -> None:
    """A failing read must not end the watch (its ``cpu_seconds`` would go unenforced)
    nor the thread (every other sandbox's would)."""
    poller = CpuPoller(interval_s=0.01, name="rlmbox-cpu-test")
    ticks = {"bad": 0, "good": 0}

    def bad() -> bool:
        ticks["bad"] += 1
        raise OSError("cgroup file vanished")

    def good() -> bool:
        ticks["good"] += 1
        return True

    poller.watch(bad)
    poller.watch(good)
    deadline = time.monotonic() + 5
    while min(ticks.values()) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert min(ticks.values()) >= 5, ticks
