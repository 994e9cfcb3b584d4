"""The hardened container configuration, in one place, from a ``SandboxSpec``.

Each setting here backs an isolation property the backend declares, and each is proven
from inside a container by ``tests/docker/test_hardening.py``. There is no switch to turn
any of them off.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from rlmbox.sandboxes.base import ENVIRONMENT_MOUNT, IsolationProperty, ResourceLimits

SANDBOX_UID: Final = 10001
WORKDIR: Final = "/work"
AGENT_MOUNT: Final = "/rlmbox/agent"
CONTEXT_MOUNT: Final = "/rlmbox/context"
SOCKET_MOUNT: Final = "/rlmbox/sock"
SOCKET_NAME: Final = "agent.sock"
AGENT_COMMAND: Final = ("python3", "-I", "-B", f"{AGENT_MOUNT}/agent.py")
TRANSPORTS: Final = ("auto", "stdio", "socket")

# runsc's sentry, gofer and (ptrace platform) stub processes are threads and processes of
# the container's pids cgroup: below ~128 the sandbox cannot even boot. The sandbox's own
# budget is added on top, so a policy's pids limit means the same thing on both runtimes.
RUNSC_PIDS_OVERHEAD: Final = 128

_COMMON: Final = frozenset({
    IsolationProperty.NETWORK_NONE, IsolationProperty.FILESYSTEM_PRIVATE,
    IsolationProperty.READ_ONLY_ROOT, IsolationProperty.NO_NEW_PRIVILEGES,
    IsolationProperty.NON_ROOT, IsolationProperty.CAPS_DROPPED,
    IsolationProperty.PID_NAMESPACE, IsolationProperty.MEMORY_LIMIT,
    IsolationProperty.PIDS_LIMIT, IsolationProperty.CPU_LIMIT,
    IsolationProperty.DISK_LIMIT, IsolationProperty.TREE_KILL,
})


def properties_for(runtime: str) -> frozenset[IsolationProperty]:
    """What a container on ``runtime`` is configured to enforce (each proven by a test)."""
    if runtime == "runsc":
        # No guest seccomp: Debian's 2022 runsc with --oci-seccomp refuses every thread
        # under Docker's default profile. The sentry itself runs under gVisor's host filter.
        return _COMMON | {IsolationProperty.USER_SPACE_KERNEL}
    return _COMMON | {IsolationProperty.SECCOMP}


def engine_enforced(runtime: str) -> frozenset[IsolationProperty]:
    """Properties the probe cell cannot observe from inside but the engine's configuration
    sets: limits are cgroup settings read back by tests, NoNewPrivs has no /proc line in
    gVisor (prctl shows it), and the user-space kernel is the runtime itself."""
    engine = {IsolationProperty.MEMORY_LIMIT, IsolationProperty.PIDS_LIMIT,
              IsolationProperty.CPU_LIMIT, IsolationProperty.DISK_LIMIT,
              IsolationProperty.TREE_KILL, IsolationProperty.PID_NAMESPACE,
              IsolationProperty.NO_NEW_PRIVILEGES}
    if runtime == "runsc":
        engine.add(IsolationProperty.USER_SPACE_KERNEL)
    return frozenset(engine)


def agent_command(transport: str) -> list[str]:
    """The container's command: the agent, told to connect when the transport is a socket."""
    if transport == "socket":
        return [*AGENT_COMMAND, f"--connect={SOCKET_MOUNT}/{SOCKET_NAME}"]
    return list(AGENT_COMMAND)


def pids_limit(limits: ResourceLimits, runtime: str) -> int:
    return limits.pids + (RUNSC_PIDS_OVERHEAD if runtime == "runsc" else 0)


@dataclass(frozen=True)
class Mounts:
    """The only host paths a container sees, all read-only."""

    agent_dir: Path
    context_dir: Path | None = None      # local engine: a per-sandbox staging directory
    context_volume: str | None = None    # remote engine: a per-sandbox volume
    socket_dir: Path | None = None       # socket transport: the per-sandbox listener's dir
    environment_dir: Path | None = None  # a built package environment (local engine only)


def host_config(api: Any, limits: ResourceLimits, runtime: str, mounts: Mounts) -> Any:
    """The engine's HostConfig for one sandbox container."""
    from docker.types import Ulimit  # noqa: PLC0415 - optional dependency

    binds = {str(mounts.agent_dir): {"bind": AGENT_MOUNT, "mode": "ro"}}
    if mounts.context_dir is not None:
        binds[str(mounts.context_dir)] = {"bind": CONTEXT_MOUNT, "mode": "ro"}
    if mounts.context_volume is not None:
        binds[mounts.context_volume] = {"bind": CONTEXT_MOUNT, "mode": "ro"}
    if mounts.socket_dir is not None:
        # Read-only: a socket on a read-only mount can still be connected to, and nothing
        # can be created, renamed or removed in the directory from inside.
        binds[str(mounts.socket_dir)] = {"bind": SOCKET_MOUNT, "mode": "ro"}
    if mounts.environment_dir is not None:
        binds[str(mounts.environment_dir)] = {"bind": ENVIRONMENT_MOUNT, "mode": "ro"}
    disk = max(limits.disk_bytes, 1024 * 1024)
    tmpfs_opts = "rw,nosuid,nodev,size={size},mode={mode}{owner}"
    owner = f",uid={SANDBOX_UID},gid={SANDBOX_UID}"
    return api.create_host_config(
        runtime=runtime,
        network_mode="none",
        read_only=True,
        tmpfs={
            "/tmp": tmpfs_opts.format(size=disk, mode="1777", owner=""),
            WORKDIR: tmpfs_opts.format(size=disk, mode="0700", owner=owner),
        },
        shm_size=min(limits.shm_bytes, disk),
        ipc_mode="private",
        cap_drop=["ALL"],
        security_opt=["no-new-privileges:true"],  # and the engine's default seccomp profile
        mem_limit=limits.memory_bytes,
        memswap_limit=limits.memory_bytes,        # equal: no swap on top of memory
        pids_limit=pids_limit(limits, runtime),
        nano_cpus=int(limits.cpu_cores * 1e9),
        ulimits=[
            Ulimit(name="nofile", soft=limits.open_files, hard=limits.open_files),
            Ulimit(name="fsize", soft=limits.file_size_bytes, hard=limits.file_size_bytes),
            Ulimit(name="cpu", soft=limits.cpu_seconds, hard=limits.cpu_seconds),
            Ulimit(name="core", soft=0, hard=0),
        ],
        binds=binds,
        # frames (prompts, completions, context slices) must not persist in the engine's
        # container logs, outside the audit log and its redaction: no log driver at all
        log_config={"Type": "none", "Config": {}},
        privileged=False,
        oom_kill_disable=False,
    )
