"""A jail is entered by programs it execs, not by Python code between fork and exec.

A ``preexec_fn`` makes CPython fork the whole host process: for the daemon that took
about 25 ms a sandbox, with the GIL held, stalling every other tenant's requests (issue
11, finding 10). Without one, ``subprocess`` uses vfork. The walls themselves must still
be up before the jailed program's first instruction: checked here from the host's side,
in /proc, on the live agent.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

from live_processes import in_cgroup_named

from rlmbox.policies.model import ContextPolicy
from rlmbox.runtime.context import ContextStore
from rlmbox.runtime.runtime import Runtime
from rlmbox.sandboxes.process.cgroups import cgroup_version

_counting = threading.Event()
_forks: list[int] = []


def _count_fork() -> None:
    if _counting.is_set():
        _forks.append(1)


os.register_at_fork(before=_count_fork)


def _forks_during(work: Callable[[], object]) -> int:
    """How often this process forked (Python-level, as a preexec_fn forces) in ``work``."""
    _forks.clear()
    _counting.set()
    try:
        work()
    finally:
        _counting.clear()
    return len(_forks)


def test_a_session_sandbox_starts_without_forking_the_host(runtime: Runtime) -> None:
    def start_and_run() -> None:
        with runtime.session() as session:
            assert session.exec("x = 1").status == "ok"

    assert _forks_during(start_and_run) == 0


def test_a_context_search_jail_starts_without_forking_the_host(tmp_path: Path) -> None:
    store = ContextStore("alpha beta gamma", tmp_path, ContextPolicy(mode="gated"))
    try:
        found: list[object] = []
        assert _forks_during(lambda: found.append(store.search("beta", 1))) == 0
        assert found
        assert "beta" in str(found[0])
    finally:
        store.close()


def _limits_of(pid: int) -> dict[str, str]:
    """``/proc/PID/limits`` as {name: soft limit}."""
    lines = Path(f"/proc/{pid}/limits").read_text().splitlines()[1:]
    return {line[:26].strip(): line[26:47].strip() for line in lines}


def test_the_agent_has_its_cgroup_rlimits_and_uid_from_its_first_instruction(
        runtime: Runtime) -> None:
    """Read on the host from the live agent: the exec'd entry programs left it in its
    cgroup, under the policy's rlimits and, as root, under a uid of its own."""
    limits = runtime.policy.limits
    with runtime.session() as session:
        pid = int(session.exec("import os\nprint(os.getpid())").stdout)   # inside: 1 or 2
        sandbox_id = session.sandbox.info.sandbox_id
        agents = [p for p in sorted(in_cgroup_named(f"/rlmbox/{sandbox_id}"))
                  if Path(f"/proc/{p}/cmdline").read_bytes().find(b"agent") >= 0]
        assert agents, f"no agent process found in the sandbox's cgroup (inside pid {pid})"
        agent = agents[-1]
        seen = _limits_of(agent)
        assert seen["Max cpu time"] == str(limits.cpu_seconds)
        assert seen["Max file size"] == str(limits.file_size_mb * 1024 * 1024)
        assert seen["Max core file size"] == "0"
        assert seen["Max open files"] == str(limits.open_files)
        assert seen["Max address space"] != "unlimited"
        if os.geteuid() == 0:
            uids = Path(f"/proc/{agent}/status").read_text().split("Uid:")[1].split()[:4]
            assert "0" not in uids, uids   # real, effective, saved and fs uid all dropped
        if cgroup_version():
            assert f"/rlmbox/{sandbox_id}" in Path(f"/proc/{agent}/cgroup").read_text()
