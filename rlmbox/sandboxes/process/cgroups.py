"""Per-sandbox control groups: memory, pids and CPU limits, OOM detection, tree kill, and
the CPU time of the whole tree (RLIMIT_CPU counts one process; the group counts them all).

Works on cgroup v2 (unified) and v1 (one hierarchy per controller; Debian 12 hosts and
containers still use it). A process joins by writing its own pid before it execs the
sandbox, so every descendant is accounted from its first instruction.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from rlmbox.sandboxes.process.pidfd import kill_if_ours

_ROOT = Path("/sys/fs/cgroup")
_PARENT = "rlmbox"
_HOST = "rlmbox-host"   # the daemon's own group, a sibling of every sandbox's parent
_V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct")
# (file, the kernel's default weight, the least it allows) per cgroup version
_CPU_WEIGHT = {1: ("cpu.shares", 1024, 2), 2: ("cpu.weight", 100, 1)}
# the daemon's weight over the kernel's default (which every sandbox's parent keeps)
HOST_WEIGHT_FACTOR = 10


@dataclass(frozen=True)
class CgroupLimits:
    memory_bytes: int
    pids: int
    cpu_cores: float


def cgroup_version() -> int:
    """2 for a unified hierarchy with the controllers we need, 1 for v1, 0 for none usable."""
    if os.geteuid() != 0:
        return 0  # creating cgroups needs root (or delegation, which we do not assume)
    controllers = _ROOT / "cgroup.controllers"
    if controllers.exists():
        available = set(controllers.read_text().split())
        if {"memory", "pids", "cpu"} <= available:
            return 2
    if all((_ROOT / c / "cgroup.procs").exists() for c in _V1_CONTROLLERS):
        return 1
    return 0


class Cgroup:
    """One sandbox's cgroup (a directory per controller on v1)."""

    def __init__(self, name: str, limits: CgroupLimits, version: int) -> None:
        self.name = name
        self.version = version
        self._dirs = _dirs_for(name, version)
        self._memory_bytes = limits.memory_bytes
        if version == 2:
            parent = _ROOT / _PARENT
            parent.mkdir(exist_ok=True)
            _enable_v2_controllers(parent)
            self._dirs["memory"].mkdir()
        else:
            for path in set(self._dirs.values()):
                path.mkdir(parents=True)
        self._apply(limits)

    @classmethod
    def existing(cls, name: str) -> Cgroup | None:
        """The group a sandbox named ``name`` left behind (its owner died), or None: so a
        restarted daemon kills and removes it with the same code that made it."""
        version = cgroup_version()
        if version == 0 or not name or "/" in name or name.startswith("."):
            return None
        group = cls.__new__(cls)
        group.name, group.version, group._dirs = name, version, _dirs_for(name, version)
        return group if any(d.is_dir() for d in group._dirs.values()) else None

    def _apply(self, limits: CgroupLimits) -> None:
        quota = max(1000, int(limits.cpu_cores * 100_000))
        if self.version == 2:
            d = self._dirs["memory"]
            _write(d / "memory.max", str(limits.memory_bytes))
            with contextlib.suppress(OSError):
                _write(d / "memory.swap.max", "0")
            _write(d / "pids.max", str(limits.pids))
            _write(d / "cpu.max", f"{quota} 100000")
        else:
            mem = self._dirs["memory"]
            _write(mem / "memory.limit_in_bytes", str(limits.memory_bytes))
            with contextlib.suppress(OSError):  # present only with swap accounting
                _write(mem / "memory.memsw.limit_in_bytes", str(limits.memory_bytes))
            _write(self._dirs["pids"] / "pids.max", str(limits.pids))
            _write(self._dirs["cpu"] / "cpu.cfs_period_us", "100000")
            _write(self._dirs["cpu"] / "cpu.cfs_quota_us", str(quota))

    def take_from_memory(self, nbytes: int) -> bool:
        """Lowers the memory limit by ``nbytes`` (memory the sandbox uses that is charged
        elsewhere); False, changing nothing, when less than a MiB would be left."""
        left = self._memory_bytes - nbytes
        if left < 1 << 20:
            return False
        if self.version == 2:
            _write(self._dirs["memory"] / "memory.max", str(left))
        else:
            mem = self._dirs["memory"]
            # the combined limit may not go below the memory limit: lowered after it
            _write(mem / "memory.limit_in_bytes", str(left))
            with contextlib.suppress(OSError):  # present only with swap accounting
                _write(mem / "memory.memsw.limit_in_bytes", str(left))
        self._memory_bytes = left
        return True

    def yield_cpu(self, background: bool) -> None:
        """The least CPU weight the kernel allows (``background``), or its default: under
        contention a waking short cell elsewhere runs before this group's busy processes;
        with the CPU idle, weights change nothing. The ``cpu_cores`` quota holds either way.

        Raises:
            OSError: the kernel refused the write (the group is gone with its sandbox).
        """
        name, default, least = _CPU_WEIGHT[self.version]
        _write(self._dirs["cpu"] / name, str(least if background else default))

    def procs_files(self) -> list[str]:
        """The files a child writes its pid into to join (one per v1 controller)."""
        return sorted({str(d / "cgroup.procs") for d in self._dirs.values()})

    def pids(self) -> list[int]:
        text = _read(self._dirs["pids"] / "cgroup.procs")
        return [int(p) for p in text.split()]

    def holds(self, pid: int) -> bool:
        """True when process ``pid`` is a member of this group (read from its side)."""
        membership = _read(Path(f"/proc/{pid}/cgroup"))
        return any(line.endswith(f"/{_PARENT}/{self.name}") for line in membership.splitlines())

    def enforces(self, limits: CgroupLimits) -> bool:
        """True when the memory and pids limits read back from the kernel are ``limits``
        or tighter (what was written, not what was meant to be)."""
        memory_file = "memory.max" if self.version == 2 else "memory.limit_in_bytes"
        try:
            memory = int(_read(self._dirs["memory"] / memory_file))
            pids = int(_read(self._dirs["pids"] / "pids.max"))
        except ValueError:   # 'max' (no limit) or unreadable
            return False
        return memory <= limits.memory_bytes and pids <= limits.pids

    def oom_killed(self) -> bool:
        if self.version == 2:
            return _event_count(self._dirs["memory"] / "memory.events", "oom_kill") > 0
        return _event_count(self._dirs["memory"] / "memory.oom_control", "oom_kill") > 0

    def pids_exhausted(self) -> bool:
        return _event_count(self._dirs["pids"] / "pids.events", "max") > 0

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used by every process that was ever in the group."""
        try:
            if self.version == 2:
                return _event_count(self._dirs["cpu"] / "cpu.stat", "usage_usec") / 1e6
            return int(_read(self._dirs["cpuacct"] / "cpuacct.usage") or 0) / 1e9
        except ValueError:
            return 0.0

    def memory_peak(self) -> int:
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        try:
            return int(_read(self._dirs["memory"] / name) or 0)
        except ValueError:
            return 0

    def kill_all(self, timeout: float = 5.0) -> bool:
        """SIGKILLs every process in the group until it is empty; True when empty."""
        kill_file = self._dirs["memory"] / "cgroup.kill"
        if self.version == 2 and kill_file.exists():
            with contextlib.suppress(OSError):
                _write(kill_file, "1")
        return kill_until_empty(self.pids, self.holds, time.monotonic() + timeout)

    def remove(self, timeout: float = 5.0) -> list[str]:
        """Kills what is left and removes the group's directories; returns what it could
        not clean up (empty when clean), for the caller to record: a process that would
        not die or a directory that would not go is evidence, not something to drop."""
        problems = []
        if not self.kill_all(timeout):
            problems.append(f"processes still in cgroup {self.name} after {timeout:g} s: "
                            f"{sorted(self.pids())[:20]}")
        for path in sorted(set(self._dirs.values())):
            deadline = time.monotonic() + max(0.2, timeout)
            delays = poll_delays(cap_s=0.01)
            while True:
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if time.monotonic() > deadline:
                        problems.append(f"{path} could not be removed: {exc.strerror}")
                        break
                    time.sleep(next(delays))  # the kernel frees a dying group asynchronously
        return problems


def run_before_sandboxes() -> str | None:
    """Moves this process (every thread) into its own CPU group at ``HOST_WEIGHT_FACTOR``
    times the default weight, and returns that group's directory; None without usable
    cgroups. Why: the daemon serves every tenant, so its event loop, and its thread
    forking a sandbox while holding the GIL, must not wait in the run queue behind
    sandboxes (one tenant's starting or busy sandboxes delayed another's cells). The
    sandboxes it starts leave this group for their own before they exec.

    Raises:
        OSError: the kernel refused to create the group, set its weight or move us.
    """
    version = cgroup_version()
    if version == 0:
        return None
    if version == 2:
        _enable_v2_controllers(_ROOT / _PARENT)
        group = _ROOT / _HOST
    else:
        group = (_ROOT / "cpu").resolve() / _HOST
    group.mkdir(exist_ok=True)
    name, default, _ = _CPU_WEIGHT[version]
    _write(group / name, str(default * HOST_WEIGHT_FACTOR))
    _write(group / "cgroup.procs", str(os.getpid()))
    return str(group)


def kill_until_empty(pids: Callable[[], list[int]], holds: Callable[[int], bool],
                     deadline: float) -> bool:
    """SIGKILLs every process ``pids()`` lists (each only if ``holds`` it once pinned)
    until it lists none; True when empty by ``deadline`` (``time.monotonic()``)."""
    delays = poll_delays(cap_s=0.005)
    while True:
        listed = pids()
        if not listed:
            return True
        for pid in listed:   # a pid read above may be someone else's by now
            with contextlib.suppress(PermissionError):
                kill_if_ours(pid, holds)
        if time.monotonic() > deadline:
            return False
        time.sleep(next(delays))


def poll_delays(cap_s: float, first_s: float = 0.00025) -> Iterator[float]:
    """Sleeps between looks at the kernel while a killed tree dies: short at first (a tree
    is usually gone within a millisecond or two, and closing a session waits for it), then
    doubling up to ``cap_s``, so a slow death is polled no more often than before."""
    delay = first_s
    while True:
        yield delay
        delay = min(cap_s, delay * 2)


def _dirs_for(name: str, version: int) -> dict[str, Path]:
    """Where group ``name`` lives, by controller (v2: one directory for all)."""
    if version == 2:
        return dict.fromkeys(_V1_CONTROLLERS, _ROOT / _PARENT / name)
    # resolved: hosts that mount "cpu,cpuacct" together link both names to one directory
    return {c: (_ROOT / c).resolve() / _PARENT / name for c in _V1_CONTROLLERS}


def _enable_v2_controllers(parent: Path) -> None:
    for level in (_ROOT, parent):
        with contextlib.suppress(OSError):
            _write(level / "cgroup.subtree_control", "+memory +pids +cpu")


def _event_count(path: Path, key: str) -> int:
    for line in _read(path).splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key:
            return int(parts[1])
    return 0


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _write(path: Path, value: str) -> None:
    with open(path, "w") as handle:
        handle.write(value)
