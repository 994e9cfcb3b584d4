"""Docker engine backend: hardened containers, runtime runc or runsc (gVisor)."""

from __future__ import annotations

import sys


def wait_for_removals() -> None:
    """Blocks until the engine removals this process queued have run (``host_kill``'s
    ``REMOVALS``): a host that closed containers waits for them before it reports itself
    closed or exits. A process that never loaded the Docker backend has none, and this
    does not load it."""
    host_kill = sys.modules.get(f"{__name__}.host_kill")
    if host_kill is not None:
        host_kill.REMOVALS.wait()
