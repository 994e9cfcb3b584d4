"""This machine's live processes (zombies excluded) picked by what /proc says of them:
how the tests find a sandbox's, a container's or a reaper's processes."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def is_live(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def live_pids(picked: Callable[[int], bool]) -> set[int]:
    """Pids of live, non-zombie processes for which ``picked(pid)`` holds (a process gone
    while it is read is left out)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if not picked(int(entry)):
                continue
        except OSError:
            continue
        if is_live(int(entry)):
            found.add(int(entry))
    return found


def in_cgroup_named(name: str) -> set[int]:
    """Live processes whose cgroup path names ``name`` (a sandbox or container id)."""
    return live_pids(lambda pid: name in Path(f"/proc/{pid}/cgroup").read_text())
