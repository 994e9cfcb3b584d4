"""``cpu_seconds`` binds the whole sandbox on every backend, forked children included.

RLIMIT_CPU (and Docker's ``cpu`` ulimit, which is the same rlimit) binds each process
alone: a cell that forks three children gets the allowance three times. The host reads the
sandbox's cgroup (the process jail's own, or the container's) and kills the sandbox once
all its processes together used ``cpu_seconds``, naming the limit.
"""

from __future__ import annotations

import json

from .harness import Runtimes, skip_on_e2b, watched_session
from .test_review_boundary import FORK_BURN


def test_forked_children_share_one_cpu_seconds_allowance(backend: str,
                                                         runtimes: Runtimes) -> None:
    skip_on_e2b(backend, "the host cannot read an E2B VM's CPU time: cpu_seconds is "
                         "RLIMIT_CPU there, per process (docs/security.md, Known limits)")
    rt = runtimes(limits={"cpu_seconds": 1, "cpu_cores": 2.0, "cell_timeout_s": 60})
    with watched_session(rt) as (session, _):
        result = session.exec(FORK_BURN)
        assert result.status == "killed", (
            f"the forked children ran to the end (cell {result.status}: "
            f"{json.dumps(result.stdout[-80:])})")
        assert "cpu_seconds" in (result.error or ""), result.error
        assert "done" not in result.stdout
