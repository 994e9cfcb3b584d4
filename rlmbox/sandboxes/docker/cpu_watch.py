"""The host's watch on a container's whole CPU time, so ``cpu_seconds`` binds the sandbox.

Docker's ``cpu`` ulimit is RLIMIT_CPU: it binds each process alone, so a cell that forks
gets the allowance once per child. The container's cgroup counts the CPU time of every
process it ever held (gVisor's sentry included); the host polls it and kills the container
once the sum reaches ``cpu_seconds``. The cgroup is read from this machine's
``/sys/fs/cgroup``, so the watch needs a local engine; with a remote one the ulimit is all.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Final

from rlmbox.sandboxes.cpu_poller import off_the_sweep, shared_poller
from rlmbox.sandboxes.docker.cgroup_files import cgroup_file_of

INTERVAL_S: Final = 0.1   # how far past cpu_seconds a busy container may run
_V1_CPUACCT_MOUNTS: Final = ("cpuacct", "cpu,cpuacct", "cpuacct,cpu")


def cpu_usage_file(pid: int, root: Path = Path("/sys/fs/cgroup")) -> Path | None:
    """The file holding the CPU time of the cgroup process ``pid`` is in, or None."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    return usage_file_of(lines, root)


def usage_file_of(lines: list[str], root: Path) -> Path | None:
    """From a ``/proc/PID/cgroup`` listing: cgroup v1's ``cpuacct.usage`` when the cpuacct
    controller is mounted, else cgroup v2's ``cpu.stat``."""
    return cgroup_file_of(lines, root, controller="cpuacct", v1_mounts=_V1_CPUACCT_MOUNTS,
                          v1_name="cpuacct.usage", v2_name="cpu.stat")


def cpu_seconds_used(usage: Path) -> float | None:
    """The cgroup's CPU time in seconds; None once the cgroup is gone."""
    try:
        text = usage.read_text()
    except OSError:
        return None
    if usage.name == "cpuacct.usage":
        return int(text.strip() or 0) / 1e9
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            return int(value) / 1e6
    return None


class CpuWatch:
    """Reads ``usage`` on the host's shared CPU poller and calls ``on_spent`` once, on a
    thread of its own, at ``limit`` seconds."""

    def __init__(self, usage: Path, limit: float, on_spent: Callable[[], None],
                 name: str) -> None:
        self._usage = usage
        self._limit = limit
        self._on_spent = on_spent
        self._name = name
        self._watch = shared_poller(INTERVAL_S).watch(self._tick)

    def _tick(self) -> bool:
        used = cpu_seconds_used(self._usage)
        if used is None:
            if self._usage.parent.exists():   # a failed read (out of descriptors, say)
                raise OSError(f"cannot read {self._usage}; polled again next sweep")
            return False   # the cgroup is gone: so is the container
        if used >= self._limit:
            off_the_sweep(self._on_spent, self._name)
            return False
        return True

    def stop(self) -> None:
        self._watch.stop()
