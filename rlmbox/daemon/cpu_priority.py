"""The daemon's place on the host's CPU: before its sandboxes, so that one tenant's
sandboxes cannot queue the event loop and the sandbox starts that every tenant needs."""

from __future__ import annotations

import logging

from rlmbox.sandboxes.process.cgroups import HOST_WEIGHT_FACTOR, run_before_sandboxes

log = logging.getLogger("rlmbox.daemon")


def run_daemon_before_sandboxes() -> None:
    """Gives the ``rlmbox serve`` process the CPU before its sandboxes (cgroups.py
    ``run_before_sandboxes``) and says in the log whether it could: without it one
    tenant's sandboxes delay every tenant's requests (docs/daemon.md, Limits 8)."""
    try:
        group = run_before_sandboxes()
    except OSError as exc:
        log.warning("the daemon shares the CPU with its sandboxes at equal weight: "
                    "its CPU group could not be set up (%s)", exc)
        return
    if group is None:
        log.warning("the daemon shares the CPU with its sandboxes at equal weight: "
                    "no usable cgroups (they need root)")
        return
    log.info("the daemon runs at %dx its sandboxes' CPU weight (cgroup %s)",
             HOST_WEIGHT_FACTOR, group)
