"""Finding a node actor's sandbox reaper (``rlmbox/cluster/sandbox_reaper.py``) among this
machine's processes, by the owner its command line names."""

from __future__ import annotations

from pathlib import Path

from live_processes import live_pids


def reaper_pids(owner: str) -> set[int]:
    """Live reaper processes started for ``owner`` (an ``Owner.id``)."""

    def started_for_owner(pid: int) -> bool:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        return b"sandbox_reaper" in cmdline and owner.encode() in cmdline.split(b"\0")

    return live_pids(started_for_owner)
