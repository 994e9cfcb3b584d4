"""What one daemon admits, globally and per tenant, so no tenant can starve the others.

The operator sets each limit (``rlmbox serve`` flags); the defaults suit one machine of a
few cores. Sessions count ``rlm_query`` children; a cell slot is also taken while a
session's sandbox starts (both hold a server thread). The pool of server threads must be
larger than the global cell limit, so closing sessions and reading the audit log always
find a thread.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields

from rlmbox.errors import DaemonError

GiB = 1024 ** 3


@dataclass(frozen=True)
class DaemonLimits:
    sessions: int = 256                     # open sessions of all tenants, children included
    sessions_per_tenant: int = 64           # the same, per tenant
    cells: int = 24                         # cells running (and sandboxes starting) at once
    # the same, per tenant: by default half the cores, so one tenant's CPU-bound cells
    # leave the other half to everyone else (raise it for cells that mostly wait on LMs)
    cells_per_tenant: int = field(default_factory=lambda: max(1, (os.cpu_count() or 2) // 2))
    requests_per_s_per_tenant: float = 50.0     # sustained authenticated request rate
    request_burst_per_tenant: int = 100         # requests above the rate, absorbed at once
    audit_bytes_per_tenant: int = 4 * GiB   # the tenant's records and bodies in the log

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise DaemonError(f"daemon limit {spec.name} must be a positive number, "
                                  f"not {value!r}", type="Config")
        for tenant, overall in (("sessions_per_tenant", "sessions"),
                                ("cells_per_tenant", "cells")):
            if getattr(self, tenant) > getattr(self, overall):
                raise DaemonError(f"daemon limit {tenant} ({getattr(self, tenant)}) is above "
                                  f"{overall} ({getattr(self, overall)})", type="Config")

    def check_threads(self, threads: int) -> None:
        """Refuses a pool that cells alone could fill."""
        if threads <= self.cells:
            raise DaemonError(f"--threads ({threads}) must be above the cell limit "
                              f"({self.cells}), so closes and audit reads always find a "
                              "thread", type="Config")
