"""Finding and killing what a crashed daemon's sandboxes left behind, safely.

A process sandbox is recorded as ``(pid, start time)`` pairs: the start time (field 22
of /proc/PID/stat) tells the original process from a later one that reused its pid, so
reconciliation never kills an innocent process. Its cgroup and staging directory, named
by the sandbox id, are removed too.
"""

from __future__ import annotations

import functools
import shutil
from typing import Any

from rlmbox.sandboxes.bundle import cache_root
from rlmbox.sandboxes.process.cgroups import Cgroup
from rlmbox.sandboxes.process.pidfd import kill_if_ours, stat_fields


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot, or None when it is gone."""
    fields = stat_fields(pid)
    return fields[19] if fields else None


def is_running(pid: int, started: str) -> bool:
    """True when ``pid`` is still the process that started at ``started`` and has not
    exited: a zombie (exited, not yet reaped by a parent that may never reap it, such as
    a container's pid 1) holds no resources and cannot be killed any further."""
    fields = stat_fields(pid)
    return fields is not None and fields[19] == started and fields[0] not in ("Z", "X")


def process_identity(sandbox: Any) -> list[tuple[int, str]]:
    """``(pid, start)`` of a process sandbox's host processes (bwrap and the namespace's
    init); empty for backends without host processes of their own (Docker)."""
    host_pids = getattr(sandbox, "host_pids", None)
    pids: list[int] = host_pids() if callable(host_pids) else []
    found = []
    for pid in pids:
        started = start_time(pid)
        if started is not None:
            found.append((pid, started))
    return found


def _still_started_at(started: str, pid: int) -> bool:
    return is_running(pid, started)


def kill_recorded(pids: list[tuple[int, str]]) -> int:
    """SIGKILLs each recorded process that is still the same process; returns how many."""
    killed = 0
    for pid, started in pids:
        # checked again once pinned: gone, a zombie, or the pid now someone else's
        if kill_if_ours(pid, functools.partial(_still_started_at, started)):
            killed += 1
    return killed


def kill_cgroup(sandbox_id: str, timeout: float = 10.0) -> tuple[int, list[str]]:
    """Kills every process left in the sandbox's cgroup and removes it; returns how many
    processes it found there and what it could not clean up."""
    group = Cgroup.existing(sandbox_id)
    if group is None:
        return 0, []
    found = len(group.pids())
    return found, group.remove(timeout)


def remove_staging(sandbox_id: str) -> None:
    """The process sandbox's staging and work directories, named by its id."""
    if not sandbox_id or "/" in sandbox_id or sandbox_id.startswith("."):
        return
    for kind in ("stage", "work"):
        shutil.rmtree(cache_root() / kind / sandbox_id, ignore_errors=True)
