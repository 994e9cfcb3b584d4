"""Finding a node actor's sandbox reaper (``rlmbox/cluster/sandbox_reaper.py``) among this
machine's processes, by the owner its command line names."""

from __future__ import annotations

import os
from pathlib import Path


def reaper_pids(owner: str) -> set[int]:
    """Live reaper processes started for ``owner`` (an ``Owner.id``)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if b"sandbox_reaper" in cmdline and owner.encode() in cmdline.split(b"\0") and \
                state not in ("Z", "X"):
            found.add(int(entry))
    return found
