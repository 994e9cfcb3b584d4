"""Closing a process sandbox waits for its killed tree by the pid namespace init's pidfd.

The kernel ends every process of a pid namespace before that namespace's init finishes
exiting, so the init's pidfd reading ready means the whole tree is gone. Waiting on it
wakes at the exit; polling the cgroup with sleeps that double woke up to twice as late
(a tree that died in 2.1 ms was seen gone at 3.75 ms), and a close waited for that.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rlmbox.sandboxes.base import SandboxSpec
from rlmbox.sandboxes.process import cgroups
from rlmbox.sandboxes.process.backend import ProcessBackend

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or cgroups.cgroup_version() == 0,
    reason="the tree kill through a cgroup needs root and cgroups")


def _ended(pid: int) -> bool:
    """Gone, or a zombie: it runs nothing (the init may wait for the host's pid 1 to
    reap it once its parent, bwrap, is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def _sleeps_during(fn: Callable[[], None], monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The sleeps this thread took while ``fn`` ran. ``cgroups.time`` is the ``time``
    module itself, so the patch is seen by every thread: a sleep on another one (a pool's
    refill, an earlier test's reaper) is not ``fn``'s and is not counted (CI at ed25baa
    counted some thread's 0.1 s sleep)."""
    slept: list[float] = []
    real_sleep = time.sleep
    caller = threading.get_ident()

    def counted(seconds: float) -> None:
        if threading.get_ident() == caller:
            slept.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr("rlmbox.sandboxes.process.cgroups.time.sleep", counted)
    fn()
    return slept


def test_a_killed_tree_is_found_gone_without_polling_the_cgroup(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """By the time the cgroup is looked at, the tree has exited: no sleep between looks,
    the group's directories are gone and none of its processes is left."""
    backend = ProcessBackend()
    if not backend.uses_bwrap:
        pytest.skip("the pid namespace comes from bubblewrap")
    sandbox = backend.create(SandboxSpec())
    group = sandbox._cgroup
    assert group is not None
    pids = group.pids()
    assert pids, "the sandbox's processes are in its cgroup"
    slept = _sleeps_during(sandbox.kill, monkeypatch)
    assert slept == []
    assert all(_ended(pid) for pid in pids)
    assert sandbox.cleanup_problems() == []
    assert not any(path.exists() for path in group._dirs.values())
