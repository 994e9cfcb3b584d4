"""The seam every sandbox backend fits: start, send a frame, receive a frame, signal, stop.

Sessions, policy and audit never know which backend they drive. A backend also declares
the isolation properties it *enforces* (proven by tests, probed by ``rlmbox doctor``), so
a policy that requires a property can be refused before any code runs (fail closed).
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from rlmbox.sandboxes.e2b.options import E2BOptions
from rlmbox.sandboxes.protocol import Frame

ENVIRONMENT_MOUNT = "/rlmbox/env"   # where a package environment appears inside


class IsolationProperty(enum.StrEnum):
    """A guarantee a backend gives about the code it runs. Names are policy vocabulary;
    what each means is :data:`PROPERTY_MEANINGS` (``rlmbox doctor`` prints it)."""

    NETWORK_NONE = "network_none"
    FILESYSTEM_PRIVATE = "filesystem_private"
    READ_ONLY_ROOT = "read_only_root"
    NO_NEW_PRIVILEGES = "no_new_privileges"
    NON_ROOT = "non_root"
    CAPS_DROPPED = "caps_dropped"
    SECCOMP = "seccomp"
    PID_NAMESPACE = "pid_namespace"
    MEMORY_LIMIT = "memory_limit"
    PIDS_LIMIT = "pids_limit"
    CPU_LIMIT = "cpu_limit"
    DISK_LIMIT = "disk_limit"
    TREE_KILL = "tree_kill"
    USER_SPACE_KERNEL = "user_space_kernel"
    HARDWARE_VIRTUALIZATION = "hardware_virtualization"


PROPERTY_MEANINGS: dict[IsolationProperty, str] = {
    IsolationProperty.NETWORK_NONE: "no route to any host, loopback included",
    IsolationProperty.FILESYSTEM_PRIVATE: "host files invisible except what is bound read-only",
    IsolationProperty.READ_ONLY_ROOT: "system paths cannot be written",
    IsolationProperty.NO_NEW_PRIVILEGES: "setuid binaries and file caps grant nothing",
    IsolationProperty.NON_ROOT: "code runs as an unprivileged uid on the host",
    IsolationProperty.CAPS_DROPPED: "the effective capability set is empty",
    IsolationProperty.SECCOMP: "a syscall filter is installed",
    IsolationProperty.PID_NAMESPACE: "host processes are invisible and unsignalable",
    IsolationProperty.MEMORY_LIMIT: "memory use is capped",
    IsolationProperty.PIDS_LIMIT: "the process/thread count is capped (fork bombs end)",
    IsolationProperty.CPU_LIMIT: "CPU time or share is capped",
    IsolationProperty.DISK_LIMIT: "writable space is size-capped",
    IsolationProperty.TREE_KILL: "session end kills every descendant, escapees too",
    IsolationProperty.USER_SPACE_KERNEL: "syscalls served by gVisor, not the host kernel",
    IsolationProperty.HARDWARE_VIRTUALIZATION: "code runs in a VM of its own (a guest "
                                               "kernel behind a hypervisor)",
}


@dataclass(frozen=True)
class ResourceLimits:
    """Limits one sandbox runs under. ``None`` is never used to mean 'no limit'."""

    memory_bytes: int = 512 * 1024 * 1024
    cpu_seconds: int = 300            # CPU seconds for the whole sandbox (RLIMIT_CPU)
    cpu_cores: float = 1.0            # CPU share (cgroup quota)
    pids: int = 64
    open_files: int = 256
    file_size_bytes: int = 64 * 1024 * 1024
    disk_bytes: int = 64 * 1024 * 1024   # size of each writable tmpfs
    output_bytes: int = 1024 * 1024      # per cell, per stream

    @property
    def shm_bytes(self) -> int:
        """Size of /dev/shm: within the disk limit, and no larger than shared memory for
        semaphores and small buffers needs (16 MiB)."""
        return min(16 * 1024 * 1024, self.disk_bytes)


@dataclass(frozen=True)
class SandboxSpec:
    """What to start: limits, the image and runtime (for container backends), hardening."""

    limits: ResourceLimits = field(default_factory=ResourceLimits)
    image: str | None = None
    runtime: str | None = None
    seccomp: bool = True
    landlock: bool = True
    environment: Path | None = None   # a built package environment, bound read-only
    e2b: E2BOptions = field(default_factory=E2BOptions)   # read by the e2b backend only


@dataclass(frozen=True)
class SandboxInfo:
    """Identity of a running sandbox, recorded in every audit event about it."""

    backend: str
    sandbox_id: str
    runtime: str | None = None
    image: str | None = None
    transport: str | None = None     # how frames travel: "stdio", "socket", "pipe", ...


@dataclass(frozen=True)
class BackendReport:
    """What a backend's probe found on this machine."""

    name: str
    available: bool
    detail: str
    properties: frozenset[IsolationProperty] = frozenset()   # demonstrated by this probe
    declared: frozenset[IsolationProperty] = frozenset()     # set up, not observed inside
    # vouched for by the provider, not observable inside (E2B): counted, shown apart
    attested: frozenset[IsolationProperty] = frozenset()


@runtime_checkable
class Sandbox(Protocol):
    """One running sandbox holding one agent. Never reused across sessions."""

    @property
    def info(self) -> SandboxInfo: ...

    @property
    def properties(self) -> frozenset[IsolationProperty]: ...

    def stage(self, source: Path, name: str) -> str:
        """Makes a host file readable inside (read-only); returns its path inside."""
        ...

    def writable_paths(self) -> list[str]:
        """Paths inside the sandbox that code may write (Landlock's writable set)."""
        ...

    def environment_path(self) -> str | None:
        """Where the spec's package environment is inside (read-only), if it has one."""
        ...

    def count_mapped(self, nbytes: int) -> bool:
        """Counts ``nbytes`` of host page cache the agent is about to map (a large
        context, agent/context_map.py) against the sandbox's memory limit, which the
        kernel would not charge to it; False when this sandbox cannot, and then the
        context is decoded into its own memory instead, where the limit holds as ever."""
        ...

    def send(self, frame: Frame, timeout: float | None = None) -> None:
        """Sends one host -> agent frame; raises ``SandboxCrashed`` when the sandbox has
        not read it within ``timeout`` seconds (None: wait as long as it takes)."""
        ...

    def recv(self, timeout: float | None) -> Frame | None:
        """Next validated agent -> host frame; None on timeout.

        Raises ``SandboxCrashed`` at end of stream and ``ProtocolError`` for a bad frame.
        """
        ...

    def interrupt(self) -> None:
        """Asks the running cell to stop (SIGINT -> KeyboardInterrupt inside)."""
        ...

    def death_reason(self) -> str | None:
        """Why the sandbox died ('out of memory', 'pids limit', 'exit 137'), if it did."""
        ...

    def kill(self) -> None:
        """Kills every process of the sandbox, escaped descendants included. Idempotent."""
        ...

    def cleanup_problems(self) -> list[str]:
        """What ``kill`` could not clean up on the host (empty when clean); the session
        audits it as ``sandbox.cleanup_failed``."""
        ...


def reason_once_dead(sandbox: Sandbox, wait_s: float = 1.0) -> str | None:
    """Why ``sandbox`` died, asked once it has: its stream can end (an out-of-memory kill
    of the agent) a while before it is reaped and the kernel's count of the kill can be
    read, longer on a loaded host. ``None`` if it is still alive after ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while (reason := sandbox.death_reason()) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return reason


class Backend(Protocol):
    """A kind of sandbox: probes the machine and creates sandboxes."""

    name: str

    def probe(self) -> BackendReport:
        """Starts a real sandbox and reports the properties it demonstrates."""
        ...

    def properties(self) -> frozenset[IsolationProperty]:
        """The proven properties (probing once, then cached)."""
        ...

    def remedy(self, missing: frozenset[IsolationProperty]) -> str:
        """How an operator gets the ``missing`` properties on this machine ('' if no
        advice): the refusal of a session names it."""
        ...

    def create(self, spec: SandboxSpec) -> Sandbox:
        """Starts a sandbox and waits for its agent's ``ready`` frame."""
        ...
