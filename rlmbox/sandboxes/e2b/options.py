"""What a policy asks of an E2B sandbox, in the form a ``SandboxSpec`` carries (hashable:
the spec keys warm pools). Credentials are not here: they are the host's (``config.py``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class E2BOptions:
    """Template, lifetime, expected size, extra metadata and the internet switch."""

    template: str = "rlmbox"
    timeout_s: int = 3600
    cpu: int = 0           # at least this many CPUs (0: whatever the template gives, the probe)
    memory_mb: int = 0     # at least this much memory
    metadata: tuple[tuple[str, str], ...] = ()
    internet: bool = False
    tenant: str | None = None    # the daemon's tenant, tagged on the sandbox
