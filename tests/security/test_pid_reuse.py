"""A recycled pid: ending a sandbox never signals a process that merely got its number.

Pids are reused once a process has exited and been reaped, and rlmbox kills as root. Each
case puts an unrelated process (the victim) where a sandbox's pid used to be, the way a
reused pid would, and then runs the code that ends sandboxes: the victim must live.
"""

from __future__ import annotations

import itertools
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlmbox.daemon.survivors import kill_recorded, start_time
from rlmbox.sandboxes.base import SandboxSpec
from rlmbox.sandboxes.process.backend import ProcessBackend
from rlmbox.sandboxes.process.cgroups import Cgroup, CgroupLimits, cgroup_version, poll_delays
from rlmbox.sandboxes.process.pidfd import PinnedProcess


@pytest.fixture
def victim() -> Iterator[subprocess.Popen[bytes]]:
    """An unrelated process that SIGINT or SIGKILL would end."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_session_end_spares_the_process_that_took_the_init_and_agent_pids(
        victim: subprocess.Popen[bytes]) -> None:
    """Interrupt and kill reach the sandbox's own processes, not whoever holds their
    numbers now."""
    sandbox = ProcessBackend().create(SandboxSpec())
    try:
        sandbox._init_pid = victim.pid    # as if init had died and its pid been reused
        sandbox._agent_pid = victim.pid
        sandbox.interrupt()
    finally:
        sandbox.kill()
    assert victim.poll() is None, "the victim was signalled in the sandbox's place"
    assert sandbox.death_reason() is not None


def test_a_pin_on_an_exited_process_signals_nothing(victim: subprocess.Popen[bytes]) -> None:
    """A process that exited and was reaped keeps its pin dead, even when a new process
    runs; the pin never moves to it."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    pinned = PinnedProcess.pin(gone.pid, lambda pid: True)
    assert pinned is not None
    gone.wait()
    successor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        assert pinned.signal(signal.SIGKILL) is False
        assert successor.poll() is None
    finally:
        pinned.release()
        successor.kill()
        successor.wait()


def test_reconciliation_spares_a_new_process_on_a_recorded_pid() -> None:
    """A recorded (pid, start time) whose pid now runs a process started later is left
    alone."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    recorded_start = start_time(gone.pid)
    assert recorded_start is not None
    gone.wait()
    time.sleep(0.05)   # start times count clock ticks (10 ms): the next one starts later
    successor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        assert start_time(successor.pid) != recorded_start
        assert kill_recorded([(successor.pid, recorded_start)]) == 0
        assert successor.poll() is None
    finally:
        successor.kill()
        successor.wait()


@pytest.mark.skipif(cgroup_version() == 0, reason="cgroups need root")
def test_cgroup_kill_spares_a_pid_that_left_the_group(victim: subprocess.Popen[bytes],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A pid read from cgroup.procs whose process is no longer in the group (it exited
    and the pid was reused outside) is not killed."""
    group = Cgroup(f"p-test-{secrets.token_hex(4)}", CgroupLimits(64 << 20, 8, 0.5),
                   cgroup_version())
    try:
        listings = iter([[victim.pid]])
        monkeypatch.setattr(group, "pids", lambda: next(listings, []))
        assert group.kill_all(timeout=1.0)
    finally:
        monkeypatch.undo()
        group.remove()
    assert victim.poll() is None
    assert os.path.exists(f"/proc/{victim.pid}")


@pytest.mark.skipif(cgroup_version() == 0, reason="cgroups need root")
def test_a_cgroup_that_will_not_go_is_reported_not_ignored() -> None:
    """issue 11 #11: removal reports what it could not clean up (here a nested group keeps
    the directory busy) instead of giving up silently."""
    name = f"p-test-{secrets.token_hex(4)}"
    group = Cgroup(name, CgroupLimits(64 << 20, 8, 0.5), cgroup_version())
    nested = [os.path.join(os.path.dirname(f), "held") for f in group.procs_files()]
    for path in nested:
        os.mkdir(path)
    try:
        problems = group.remove(timeout=0.2)
        assert problems, "a busy cgroup directory was not reported"
        assert all("could not be removed" in p for p in problems)
    finally:
        for path in nested:
            os.rmdir(path)
        assert group.remove() == []


@pytest.mark.skipif(cgroup_version() == 0, reason="cgroups need root")
def test_a_session_audits_what_its_sandbox_left_behind(tmp_path: Path) -> None:
    from rlmbox.audit.reader import iter_records
    from rlmbox.lm.scripted import ScriptedLM
    from rlmbox.runtime.runtime import Runtime

    rt = Runtime("default", lm=ScriptedLM(default="x"), audit_dir=tmp_path / "a",
                 pool_size=0)
    try:
        session = rt.session()
        group = Cgroup.existing(session.sandbox.info.sandbox_id)
        assert group is not None
        nested = [os.path.join(os.path.dirname(f), "held") for f in group.procs_files()]
        for path in nested:
            os.mkdir(path)
        try:
            session.close()
        finally:
            for path in nested:
                os.rmdir(path)
            group.remove()
    finally:
        rt.close()
    left = [r for r in iter_records(tmp_path / "a") if r["event"] == "sandbox.cleanup_failed"]
    assert left
    assert "could not be removed" in " ".join(left[0]["problems"])


def test_tree_kill_polls_soon_then_no_faster_than_before() -> None:
    """Closing a session waits for the killed tree to leave its cgroup: the first looks come
    within a millisecond (not after a fixed 5 ms), later ones settle at the old 5 ms."""
    delays = list(itertools.islice(poll_delays(cap_s=0.005), 12))
    assert delays[0] <= 0.0005
    assert sum(delays[:3]) < 0.002
    assert delays[-1] == 0.005
    assert delays == sorted(delays)
