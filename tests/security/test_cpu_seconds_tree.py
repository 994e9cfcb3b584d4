"""``cpu_seconds`` binds the whole sandbox on every backend, forked children included.

RLIMIT_CPU (and Docker's ``cpu`` ulimit, which is the same rlimit) binds each process
alone: a cell that forks three children gets the allowance three times. The host reads the
sandbox's cgroup (the process jail's own, or the container's) and kills the sandbox once
all its processes together used ``cpu_seconds``, naming the limit.
"""

from __future__ import annotations

import json

import pytest
from cell_programs import fork_burn

from rlmbox.sandboxes.process.cgroups import cgroup_version

from .harness import Runtimes, skip_on_e2b, watched_session

FORK_BURN = fork_burn(0.7)


def test_forked_children_share_one_cpu_seconds_allowance(backend: str,
                                                         runtimes: Runtimes) -> None:
    """Three forked children burn 0.7 s each under ``cpu_seconds: 1`` (2.1 s in all, while
    RLIMIT_CPU lets each process have 1 s): the host kills the sandbox before they finish,
    and says why."""
    skip_on_e2b(backend, "the host cannot read an E2B VM's CPU time: cpu_seconds is "
                         "RLIMIT_CPU there, per process (docs/security.md, Known limits)")
    if backend == "process" and cgroup_version() == 0:
        pytest.skip("only a cgroup (root) sees a process jail's whole tree; without one "
                    "cpu_seconds binds each process alone (docs/security.md, Known limits)")
    rt = runtimes(limits={"cpu_seconds": 1, "cpu_cores": 2.0, "cell_timeout_s": 60})
    with watched_session(rt) as (session, _):
        result = session.exec(FORK_BURN)
        assert result.status == "killed", (
            f"the forked children ran to the end (cell {result.status}: "
            f"{json.dumps(result.stdout[-80:])})")
        assert "cpu_seconds" in (result.error or ""), result.error
        assert "done" not in result.stdout
