"""Runtimes shared across a process, so a frontend that makes one environment per
completion (rlms) borrows a warm pool instead of starting a sandbox cold each time.

A shared runtime is keyed by what a session's guarantees depend on: the policy's digest,
the audit sink (an open one by identity, else the audit directory), the tenant and the pool
size, and the process id (a forked child never borrows its parent's pool, whose refill
thread did not survive the fork). Each borrower still starts its own session: a fresh
sandbox (a pool hands each one out once), its own ledger and its own audit records. The
runtimes, their pools and the audit logs they opened are closed by
:func:`close_shared_runtimes`, which runs at interpreter exit.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path

from rlmbox.policies.model import Policy, load_policy_text, policy_source
from rlmbox.runtime.events import AuditSink
from rlmbox.runtime.runtime import Runtime, default_audit_dir
from rlmbox.sandboxes.docker import wait_for_removals

SharedKey = tuple[int, str, str, str | None, int]
PolicyLoader = Callable[[], Policy]

_runtimes: dict[SharedKey, Runtime] = {}
_lock = threading.Lock()


def shared_runtime(policy: str | Path | Policy, *, audit: AuditSink | None = None,
                   audit_dir: str | Path | None = None, tenant: str | None = None,
                   pool_size: int) -> Runtime:
    """The process's runtime for this policy, audit sink, tenant and pool size, made on
    first use. Borrowers close their sessions, never the runtime.

    Raises:
        PolicyError: the policy cannot be read or is invalid.
    """
    digest, load = _policy_digest(policy)
    sink = (f"sink:{id(audit)}" if audit is not None else
            f"dir:{Path(audit_dir or default_audit_dir()).resolve()}")
    key = (os.getpid(), digest, sink, tenant, pool_size)
    with _lock:
        runtime = _runtimes.get(key)
        if runtime is None or runtime.closed:
            # the runtime holds the sink, so its id is not reused while the key lives
            runtime = Runtime(load(), audit=audit, audit_dir=audit_dir, tenant=tenant,
                              pool_size=pool_size)
            _runtimes[key] = runtime
        return runtime


def close_shared_runtimes() -> None:
    """Closes every shared runtime of this process: open sessions, warm pools (every
    pooled sandbox killed) and the audit logs they opened."""
    with _lock:
        runtimes = [rt for (pid, *_), rt in _runtimes.items() if pid == os.getpid()]
        _runtimes.clear()
    for runtime in runtimes:
        runtime.close()
    # at exit this runs after the Docker removals' own wait (atexit is last-in, first-out):
    # the containers these closes killed are removed before the interpreter goes
    wait_for_removals()


def _policy_digest(policy: str | Path | Policy) -> tuple[str, PolicyLoader]:
    """The policy's digest, and how to load it (parsing only on a cache miss)."""
    if isinstance(policy, Policy):
        return policy.sha256, lambda: policy
    raw, origin = policy_source(policy)
    return hashlib.sha256(raw).hexdigest(), lambda: load_policy_text(raw, origin=origin)


atexit.register(close_shared_runtimes)
