"""Where a Runtime's sandboxes come from: one backend object per name, warm pools per spec.

Backends are built on first use (probing a backend is slow, and a policy may never name
docker), and each (backend, spec) pair gets its own pool so a sandbox is only ever handed
to a session whose policy asked for exactly its limits.
"""

from __future__ import annotations

import threading

from rlmbox.policies.model import Policy
from rlmbox.runtime.backends import backend_by_name
from rlmbox.runtime.environment import built_environment
from rlmbox.runtime.pool import WarmPool
from rlmbox.sandboxes.base import Backend, ResourceLimits, Sandbox, SandboxSpec
from rlmbox.sandboxes.e2b.options import E2BOptions

MiB = 1024 * 1024


def spec_for(policy: Policy, tenant: str | None = None) -> SandboxSpec:
    """The sandbox spec a policy asks for (``tenant``: the daemon's, tagged on remote
    sandboxes).

    Raises:
        EnvironmentNotBuilt: the policy names packages that are not built.
    """
    lim = policy.limits
    return SandboxSpec(
        limits=ResourceLimits(
            memory_bytes=lim.memory_mb * MiB, cpu_seconds=lim.cpu_seconds,
            cpu_cores=lim.cpu_cores, pids=lim.pids, open_files=lim.open_files,
            file_size_bytes=lim.file_size_mb * MiB, disk_bytes=lim.disk_mb * MiB,
            output_bytes=lim.output_bytes),
        image=policy.isolation.image, runtime=policy.isolation.runtime,
        environment=built_environment(policy), e2b=_e2b_options(policy, tenant))


def _e2b_options(policy: Policy, tenant: str | None) -> E2BOptions:
    e2b = policy.isolation.e2b_settings
    return E2BOptions(template=e2b.template, timeout_s=e2b.timeout_s, cpu=e2b.cpu,
                      memory_mb=e2b.memory_mb, metadata=tuple(sorted(e2b.metadata.items())),
                      internet=e2b.internet, tenant=tenant)


class SandboxSupply:
    """Backends by name and warm pools by (backend, spec); closed with the Runtime."""

    def __init__(self, runtime_name: str | None, pool_size: int) -> None:
        self._runtime_name = runtime_name
        self._pool_size = pool_size
        self._backends: dict[str, Backend] = {}
        self._pools: dict[tuple[str, SandboxSpec], WarmPool] = {}
        self._lock = threading.Lock()

    def backend(self, name: str) -> Backend:
        with self._lock:
            if name not in self._backends:
                self._backends[name] = backend_by_name(name, self._runtime_name)
            return self._backends[name]

    def acquire(self, backend_name: str, spec: SandboxSpec) -> tuple[Sandbox, bool]:
        """A started sandbox, and whether it came warm from a pool."""
        backend = self.backend(backend_name)
        if self._pool_size <= 0:
            return backend.create(spec), False
        key = (backend_name, spec)
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                pool = WarmPool(lambda: backend.create(spec), self._pool_size)
                self._pools[key] = pool
        return pool.acquire()

    def warm_up(self, backend_name: str, spec: SandboxSpec, timeout: float) -> bool:
        """Probes the backend and fills its pool for ``spec``; True when full."""
        self.backend(backend_name).properties()   # the probe runs once, not in a session
        sandbox, _ = self.acquire(backend_name, spec)   # creates the pool, starts refilling
        sandbox.kill()
        if self._pool_size <= 0:
            return True
        with self._lock:
            pool = self._pools[(backend_name, spec)]
        return pool.wait_full(timeout)

    def pool(self, backend_name: str, spec: SandboxSpec) -> WarmPool | None:
        """The warm pool for (backend, spec), if one was started."""
        with self._lock:
            return self._pools.get((backend_name, spec))

    def warm_by_backend(self) -> dict[str, int]:
        """Warm sandboxes ready now, by backend (the warm-pool size metric)."""
        with self._lock:
            pools = list(self._pools.items())
        totals: dict[str, int] = {}
        for (backend_name, _), pool in pools:
            totals[backend_name] = totals.get(backend_name, 0) + pool.available
        return totals

    def close(self) -> None:
        with self._lock:
            pools = list(self._pools.values())
        for pool in pools:
            pool.close()
