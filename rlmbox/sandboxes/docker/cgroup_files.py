"""Where a process's cgroup keeps a file, from its ``/proc/PID/cgroup`` listing: the one
walk over v1's per-controller lines and v2's unified line that the host's watches share."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def cgroup_file_of(lines: list[str], root: Path, *, controller: str,
                   v1_mounts: Sequence[str], v1_name: str, v2_name: str) -> Path | None:
    """The v1 ``controller``'s ``v1_name`` (under the first of ``v1_mounts`` that has it)
    when that controller is listed, else the unified (v2) group's ``v2_name``; None when
    neither exists."""
    unified: Path | None = None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        relative = path.lstrip("/")
        if controller in controllers.split(","):
            for mount in v1_mounts:
                candidate = root / mount / relative / v1_name
                if candidate.exists():
                    return candidate
        elif controllers == "":
            candidate = root / relative / v2_name
            unified = candidate if candidate.exists() else unified
    return unified
