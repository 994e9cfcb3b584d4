"""Review s8b: attacks on the shared CPU poller (``sandboxes/cpu_poller.py``, ``CpuPoller``,
``shared_poller``) that now watches every sandbox's CPU time, used by the process backend
(``ProcessSandbox._cpu_tick``) and the Docker backend (``docker/cpu_watch.py``, ``CpuWatch``).

The promise (docs/security.md rows 23a, 23c): forked children together cannot pass
``cpu_seconds``, a busy sandbox runs at the least CPU weight, and one sandbox's watch cannot
stop or delay another's enforcement, nor outlive its sandbox.

Broken, and fixed (each test was a strict xfail on 3df59c0):

- Docker: a failing read of the container's CPU time (EMFILE in a daemon short of
  descriptors, say) ends the watch for good: ``cpu_seconds_used`` says None and ``_tick``
  returns False, so the container then burns past ``cpu_seconds`` unchecked. The commit says
  a failing read is polled again; the process backend's read does retry.
- A poller whose thread failed to start (``can't start new thread``) records its pid as
  owning a thread anyway: no later watch in that process is ever ticked.
- In a forked host process the poller's new thread also ticks every watch inherited from the
  parent: copies of the parent's sandboxes whose ``kill`` (and so ``stop``) never runs in the
  child, polled for the child's whole life, and killed (stage removed, cgroup removed, uid
  released) by the child as well at their limit.
- Docker: the kill at ``cpu_seconds`` (``DockerSandbox._cpu_spent``, now on a thread of its
  own) goes through the engine's API although the host has the container's processes
  pinned; a busy engine (runsc's kill took 0.2-0.9 s here; under session churn a
  fork-burning cell once finished ``ok``) lets the children burn on past the limit.
- A watch stopped while a sweep runs is still ticked by that sweep (``_run`` ticks its
  snapshot): a Docker container's ``on_spent`` (an engine kill) can run after ``stop``
  returned. The process backend's tick checks ``_stopped`` first and holds.

Held (passing tests below): a fork-burning cell is killed naming ``cpu_seconds`` while
other sessions are opened and closed as fast as possible from two host threads (process,
runc, runsc); no watch is left behind by closed sessions nor by a sandbox
that exited on its own; children left burning between cells are killed at ``cpu_seconds``
and the next cell says why (process, runc, runsc); a slow kill of one container does not
hold up another's.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path, PosixPath
from typing import Any

import pytest
from cell_programs import fork_burn

from rlmbox.runtime.runtime import Runtime
from rlmbox.sandboxes.cpu_poller import CpuPoller, shared_poller
from rlmbox.sandboxes.docker.cpu_watch import INTERVAL_S, CpuWatch
from rlmbox.sandboxes.process.backend import CPU_WATCH_INTERVAL_S
from rlmbox.sandboxes.process.cgroups import cgroup_version

from .harness import Runtimes, skip_on_e2b
from .test_cpu_seconds_tree import FORK_BURN


def _wait_for(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


# --- Docker: a failing read ends the watch for good ------------------------------------------

class _FlakyUsage(PosixPath):
    """A container's CPU-time file whose first read fails as under descriptor exhaustion."""

    failed: threading.Event

    def read_text(self, encoding: str | None = None, errors: str | None = None) -> str:
        if not self.failed.is_set():
            self.failed.set()
            raise OSError(errno.EMFILE, "Too many open files")
        return super().read_text(encoding, errors)


def test_docker_watch_survives_one_failing_read(tmp_path: Path) -> None:
    usage_file = tmp_path / "cpuacct.usage"
    usage_file.write_text("0\n")
    usage = _FlakyUsage(usage_file)
    usage.failed = threading.Event()
    spent = threading.Event()
    watch = CpuWatch(usage, 1.0, spent.set, "review-s8b")
    try:
        assert usage.failed.wait(5), "the watch never read the file"
        usage_file.write_text(f"{int(2e9)}\n")   # 2 s: past cpu_seconds
        assert spent.wait(20 * INTERVAL_S), "cpu_seconds passed and the container lives on"
    finally:
        watch.stop()


# --- a poller whose thread did not start ----------------------------------------------------

def test_a_failed_thread_start_does_not_leave_later_watches_unpolled(
        monkeypatch: pytest.MonkeyPatch) -> None:
    poller = CpuPoller(interval_s=0.01, name="review-s8b-poller")

    def cannot_start(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    with monkeypatch.context() as patch:   # the host at its thread limit, once
        patch.setattr(threading.Thread, "start", cannot_start)
        with pytest.raises(RuntimeError):
            poller.watch(lambda: True)
    ticks = threading.Event()

    def later_sandbox() -> bool:
        ticks.set()
        return False

    poller.watch(later_sandbox)
    assert ticks.wait(2), "a sandbox started after the failure is never watched"


# --- a forked host process ------------------------------------------------------------------

def test_a_forked_host_process_does_not_poll_its_parents_sandboxes() -> None:
    poller = CpuPoller(interval_s=0.01, name="review-s8b-poller")
    parents_ticks = [0]

    def parents_sandbox() -> bool:   # its kill (and stop) runs in the parent only
        parents_ticks[0] += 1
        return True

    inherited = poller.watch(parents_sandbox)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:   # the child: a host process that starts a sandbox of its own
        try:
            parents_ticks[0] = 0
            own = threading.Event()

            def childs_sandbox() -> bool:
                own.set()
                return True

            poller.watch(childs_sandbox)
            own.wait(5)
            time.sleep(0.1)
            os.write(write_end, str(parents_ticks[0]).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as reader:
            answer = reader.read().decode()
    finally:
        os.waitpid(pid, 0)
        inherited.stop()
    assert answer == "0", f"the child ticked its parent's sandbox {answer} times"


# --- a watch stopped while a sweep runs ------------------------------------------------------

def test_a_container_watch_stopped_mid_sweep_does_not_fire(tmp_path: Path) -> None:
    """Container B is killed (``DockerSandbox.kill`` stops its watch first) while a sweep
    is under way; that sweep must not go on to call B's ``on_spent`` (an engine kill of a
    container being removed, on a thread of its own, after ``stop`` returned)."""
    usage = tmp_path / "cpuacct.usage"
    usage.write_text("0\n")
    fired_after_stop = threading.Event()
    stopped = threading.Event()
    poller = shared_poller(INTERVAL_S)
    holder: dict[str, CpuWatch] = {}
    armed = [0]

    def earlier_sandbox() -> bool:   # a watch ticked before B in the same sweep
        if "b" in holder:
            armed[0] += 1
        if armed[0] == 2:   # a sweep whose snapshot surely holds B
            usage.write_text(f"{int(2e9)}\n")   # B past its limit when the sweep gets there
            holder["b"].stop()   # what kill() on another thread does meanwhile
            stopped.set()
            return False
        return True

    def on_spent() -> None:
        if stopped.is_set():
            fired_after_stop.set()

    first = poller.watch(earlier_sandbox)
    try:
        holder["b"] = CpuWatch(usage, 1.0, on_spent, "review-s8b-b")
        assert stopped.wait(5)
        time.sleep(3 * INTERVAL_S)
        assert not fired_after_stop.is_set(), "the stopped watch killed its container again"
    finally:
        first.stop()
        holder["b"].stop()


# --- Docker: the kill at cpu_seconds waits on the engine -----------------------------------

SLOW_ENGINE_S = 3.0
BURN_PAST_THE_LIMIT = fork_burn(0.8)


def test_a_busy_engine_does_not_let_a_container_burn_past_cpu_seconds(
        runtimes: Runtimes, backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine answers a kill slowly (other tenants' containers being created and
    removed: here runsc's kill took 0.2-0.9 s, and under two churning sessions a
    fork-burning cell once finished ``ok``). The host has the container's processes pinned
    (``kill`` ends them without the engine), yet the kill at ``cpu_seconds`` waits on the
    engine: 2.4 s of CPU in all under ``cpu_seconds: 1`` ran to the end. Now the host
    kills the pinned first process itself, then asks the engine."""
    if not backend.startswith("docker"):
        pytest.skip("the Docker backend's kill at cpu_seconds")
    rt = runtimes(limits={"cpu_seconds": 1, "cpu_cores": 2.0, "cell_timeout_s": 60})
    with rt.session() as session:
        sandbox: Any = session.sandbox
        api = sandbox._client.api
        engine_kill = api.kill

        def busy_engine_kill(container: str, signal: str | None = None) -> Any:
            if signal == "SIGKILL":
                time.sleep(SLOW_ENGINE_S)
            return engine_kill(container, signal=signal)

        monkeypatch.setattr(api, "kill", busy_engine_kill)
        result = session.exec(BURN_PAST_THE_LIMIT)
        assert result.status == "killed", (
            f"the children ran to the end ({result.status}: {result.stdout.strip()[-20:]})")
        assert "cpu_seconds" in (result.error or ""), result.error


# --- held: what was tried and held ----------------------------------------------------------

def test_fork_burn_is_killed_while_sessions_churn_and_no_watch_is_left(
        runtimes: Runtimes, backend: str) -> None:
    """Two host threads open and close sessions as fast as they can while a cell's forked
    children burn past ``cpu_seconds``: the burner is still killed, naming the limit; every
    closed session's watch is gone, and so is that of a sandbox that exited by itself."""
    skip_on_e2b(backend, "the host cannot read an E2B VM's CPU time")
    if backend == "process" and cgroup_version() == 0:
        pytest.skip("no cgroups here (they need root)")
    poller = shared_poller(CPU_WATCH_INTERVAL_S)
    before = set(poller._watches)
    rt: Runtime = runtimes(limits={"cpu_seconds": 1, "cpu_cores": 2.0, "cell_timeout_s": 60})
    stop = threading.Event()
    churned = [0]

    def churn() -> None:
        while not stop.is_set():
            other = rt.session()
            other.exec("y = 2")
            other.close()
            churned[0] += 1

    with rt.session() as session:
        session.exec("x = 1")
        threads = [threading.Thread(target=churn) for _ in range(2)]
        for thread in threads:
            thread.start()
        try:
            result = session.exec(FORK_BURN)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        assert result.status == "killed", result.stdout[-80:]
        assert "cpu_seconds" in (result.error or ""), result.error
        assert churned[0] > 0
    exited = rt.session()
    assert exited.exec("import os\nos._exit(3)").status == "killed"
    assert _wait_for(lambda: set(poller._watches) <= before, 2), (
        "a dead sandbox's watch is still ticked")
    exited.close()
    assert set(poller._watches) <= before


def test_a_slow_kill_of_one_container_does_not_hold_up_anothers(tmp_path: Path) -> None:
    first, second = tmp_path / "a" / "cpuacct.usage", tmp_path / "b" / "cpuacct.usage"
    for usage in (first, second):
        usage.parent.mkdir()
        usage.write_text("0\n")
    release = threading.Event()
    second_spent = threading.Event()

    def slow_kill() -> None:   # an engine that takes its time to kill
        release.wait(10)

    watches = [CpuWatch(first, 1.0, slow_kill, "slow"),
               CpuWatch(second, 1.0, second_spent.set, "next")]
    try:
        first.write_text(f"{int(2e9)}\n")
        time.sleep(3 * INTERVAL_S)   # the first kill has started and hangs
        second.write_text(f"{int(2e9)}\n")
        assert second_spent.wait(10 * INTERVAL_S)
    finally:
        release.set()
        for watch in watches:
            watch.stop()


BURN_BETWEEN_CELLS = """
import os
for _ in range(2):
    if os.fork() == 0:
        os.setsid()
        while True:
            pass
print('left')
"""


def test_children_that_burn_between_cells_are_killed_at_cpu_seconds(
        runtimes: Runtimes, backend: str) -> None:
    """A cell leaves two detached children burning and returns at once: no cell runs, yet
    the watch kills the sandbox at ``cpu_seconds`` and the next cell says why."""
    skip_on_e2b(backend, "the host cannot read an E2B VM's CPU time")
    if backend == "process" and cgroup_version() == 0:
        pytest.skip("no cgroups here (they need root)")
    rt = runtimes(limits={"cpu_seconds": 1, "cpu_cores": 2.0, "cell_timeout_s": 60})
    poller = shared_poller(CPU_WATCH_INTERVAL_S)
    before = set(poller._watches)
    with rt.session() as session:
        assert session.exec(BURN_BETWEEN_CELLS).stdout.strip() == "left"
        # the watch leaves the poller when it starts the kill (not asking the sandbox:
        # a concurrent death_reason() on Docker can overwrite the reason being recorded)
        assert _wait_for(lambda: set(poller._watches) <= before, 10), (
            "the children burn on past cpu_seconds")
        time.sleep(0.5)   # the kill runs on a thread of its own
        result = session.exec("print('alive')")
        assert result.status == "killed", result.stdout
        assert "cpu_seconds" in (result.error or ""), result.error
