"""The ``process`` backend, the embedded default: a local process jail.

With bubblewrap: new user, pid, net, ipc, uts and cgroup namespaces; only /usr (and the
interpreter's prefix), the agent bundle and the staged context are visible, read-only; a
size-capped private tmpfs is /tmp and the working directory; ``--die-with-parent`` and
``--new-session``. Around it: rlimits, and when running as root, a cgroup (memory, pids,
CPU) and an unprivileged host uid. Inside, the agent adds Landlock and seccomp before any
model code runs.

Without bubblewrap it falls back to the layers it can still apply (rlimits, a cgroup and
network/ipc/uts namespaces when root, Landlock, seccomp) and declares only those.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rlmbox.errors import SandboxCrashed, SandboxUnavailable
from rlmbox.sandboxes.base import (
    ENVIRONMENT_MOUNT,
    BackendReport,
    IsolationProperty,
    SandboxInfo,
    SandboxSpec,
)
from rlmbox.sandboxes.bundle import agent_bundle_dir, cache_root
from rlmbox.sandboxes.channel import FrameChannel
from rlmbox.sandboxes.cpu_poller import Watch, off_the_sweep, shared_poller
from rlmbox.sandboxes.probe import observed_properties, run_probe
from rlmbox.sandboxes.process import spawner
from rlmbox.sandboxes.process.cgroups import Cgroup, CgroupLimits, cgroup_version
from rlmbox.sandboxes.process.jail import bwrap_argv, jail_entry_argv
from rlmbox.sandboxes.process.pidfd import PinnedProcess, parent_of, wait_child
from rlmbox.sandboxes.process.uids import lease_uid
from rlmbox.sandboxes.protocol import Frame

P = IsolationProperty
READY_TIMEOUT_S = 15.0
# how long a close waits for a killed tree to exit before the cgroup kill takes over
TREE_EXIT_TIMEOUT_S = 5.0
CPU_WATCH_INTERVAL_S = 0.1   # how far past cpu_seconds a tree of busy processes may run
# a sandbox that used more than this share of a core over the last watch interval yields
# the CPU to others (cgroups.py yield_cpu): a trivial cell uses about 1 %
BUSY_CORE_SHARE = 0.1
_AGENT_INSIDE = "/rlmbox/agent/agent.py"
_STAGE_INSIDE = "/rlmbox/stage"
# device files code may open for writing (Landlock): a directory's rule would let code
# create files beside them
WRITABLE_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom",
                    "/dev/tty", "/dev/pts")


def _readable_by_others(path: Path) -> bool:
    """True when a uid other than ours can reach and read ``path`` (each parent o+x)."""
    try:
        current = path.resolve()
        if not current.stat().st_mode & 0o004:
            return False
        return all(parent.stat().st_mode & 0o001 for parent in current.parents)
    except OSError:
        return False


def sandbox_python(drop_uid: bool) -> Path:
    """The interpreter to run inside: the host's own, or /usr/bin/python3 when the
    sandbox's uid cannot read the host's (e.g. a pyenv under a private /root)."""
    override = os.environ.get("RLMBOX_SANDBOX_PYTHON")
    if override:
        return Path(override)
    own = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    if not drop_uid or _readable_by_others(own):
        return own
    system = Path("/usr/bin/python3")
    if system.exists() and _readable_by_others(system):
        return system.resolve()
    raise SandboxUnavailable(
        f"no Python interpreter readable by the sandbox's own uid: {own} is private; "
        "install Debian's python3 or set RLMBOX_SANDBOX_PYTHON")


@dataclass(frozen=True)
class HostView:
    """Facts the host measures about one running sandbox (the probe cell cannot)."""

    own_pid_namespace: bool   # the agent is in another pid namespace, whose init we hold
    non_root: bool            # no uid of the agent is 0 on the host
    cgroup_enforced: bool     # the agent is in its cgroup, and the limits read back


class ProcessBackend:
    """Creates :class:`ProcessSandbox` instances; probes what this machine provides."""

    name = "process"

    def __init__(self, *, use_bwrap: bool | None = None) -> None:
        self._bwrap = shutil.which("bwrap")
        if use_bwrap is False:
            self._bwrap = None
        elif use_bwrap and not self._bwrap:
            raise SandboxUnavailable("bubblewrap (bwrap) is not installed: apt-get install "
                                     "bubblewrap")
        self._cgroups = cgroup_version()
        self._drop_uid = os.geteuid() == 0
        self._report: BackendReport | None = None   # the last probe's, kept

    @property
    def uses_bwrap(self) -> bool:
        return self._bwrap is not None

    def declared_properties(self) -> frozenset[IsolationProperty]:
        """What the set-up is built to enforce. Shown beside the measured properties by
        ``rlmbox doctor``; never counted: only :meth:`probe` grants a property."""
        props: set[IsolationProperty] = {P.MEMORY_LIMIT, P.CPU_LIMIT}   # rlimits
        if self._cgroups:
            props |= {P.PIDS_LIMIT, P.TREE_KILL}
        if self._bwrap:
            props |= {P.NETWORK_NONE, P.FILESYSTEM_PRIVATE, P.READ_ONLY_ROOT,
                      P.PID_NAMESPACE, P.TREE_KILL, P.DISK_LIMIT}
        elif self._drop_uid:
            props.add(P.NETWORK_NONE)   # the fallback's own network namespace (root only)
        if self._drop_uid:
            props.add(P.NON_ROOT)
        return frozenset(props | {P.SECCOMP, P.NO_NEW_PRIVILEGES, P.CAPS_DROPPED})

    def create(self, spec: SandboxSpec) -> ProcessSandbox:
        return ProcessSandbox(self, spec)

    def probe(self) -> BackendReport:
        """Starts a real sandbox and grants what it demonstrates: the probe cell's
        observations, checked against what the host sees of the same sandbox. A probe
        that fails, or answers only in part, grants nothing."""
        self._report = self._measure()
        return self._report

    def _measure(self) -> BackendReport:
        declared = self.declared_properties()
        spec = SandboxSpec()
        try:
            sandbox = self.create(spec)
        except SandboxUnavailable as exc:
            return BackendReport(self.name, False, str(exc), frozenset(), declared)
        try:
            run = run_probe(sandbox, READY_TIMEOUT_S)
            host = sandbox.host_view()
        finally:
            sandbox.kill()
        if run.init is None or not run.ok:
            return BackendReport(self.name, False, "the probe cell failed or did not answer",
                                 frozenset(), declared)
        props = set(observed_properties(run.facts, spec.limits))
        if not host.own_pid_namespace:
            props.discard(P.PID_NAMESPACE)
        if not host.non_root:
            props.discard(P.NON_ROOT)
        if host.cgroup_enforced:
            props |= {P.MEMORY_LIMIT, P.PIDS_LIMIT, P.CPU_LIMIT}
        if host.own_pid_namespace or host.cgroup_enforced:
            props.add(P.TREE_KILL)
        mechanism = "bubblewrap" if self._bwrap else "rlimits+namespaces (no bubblewrap)"
        layers = ", ".join(f"{k} {v}" for k, v in (run.init.get("answer") or {}).items())
        cg = f"cgroup v{self._cgroups}" if self._cgroups else "no cgroup (not root)"
        return BackendReport(self.name, True, f"{mechanism}; {cg}; {layers}",
                             frozenset(props), declared)

    def properties(self) -> frozenset[IsolationProperty]:
        """The properties the probe found (probing once, then cached); a probe that did
        not run to the end offers none."""
        report = self._report if self._report is not None else self.probe()
        if not report.available:
            raise SandboxUnavailable(report.detail)
        return report.properties

    def remedy(self, missing: frozenset[IsolationProperty]) -> str:
        advice = []
        if not self._bwrap and missing & self.BWRAP_PROVIDES:
            advice.append("install bubblewrap (apt-get install bubblewrap)")
        if not self._cgroups and missing & {P.PIDS_LIMIT, P.TREE_KILL}:
            advice.append("run rlmbox as root, so each sandbox gets a cgroup")
        if P.USER_SPACE_KERNEL in missing:   # no setting of this backend gives it
            kernel = ("the process backend shares the host kernel: use isolation.backend: "
                      "docker with isolation.runtime: runsc (gVisor) for user_space_kernel")
            return "; ".join([*advice, kernel])
        if not advice:
            return ""
        return ("; ".join(advice) + "; or accept a weaker sandbox on purpose with a policy "
                "that requires less (the 'process-fallback' preset), which the audit log "
                "records")

    BWRAP_PROVIDES = frozenset({P.NETWORK_NONE, P.FILESYSTEM_PRIVATE, P.READ_ONLY_ROOT,
                                P.PID_NAMESPACE, P.TREE_KILL, P.DISK_LIMIT, P.NON_ROOT})


class ProcessSandbox:
    """One jailed agent process. Never reused across sessions; ``kill`` is idempotent."""

    def __init__(self, backend: ProcessBackend, spec: SandboxSpec) -> None:
        self._backend = backend
        self._spec = spec
        self._id = "p-" + secrets.token_hex(6)
        self._dead = False
        self._cgroup: Cgroup | None = None
        self._cgroup_removed = False
        self._cleanup_problems: list[str] = []
        self._oom = False
        self._pids_hit = False
        self._cpu_spent = False
        self._stopped = threading.Event()
        self._cpu_watch: Watch | None = None
        self._init: PinnedProcess | None = None    # the pid namespace's init, by pidfd
        self._agent: PinnedProcess | None = None
        # a host uid no other process has (root only): see uids.py
        self._uid = lease_uid() if backend._drop_uid else None
        self._stage = cache_root() / "stage" / self._id
        try:
            self._stage.mkdir(parents=True, mode=0o700)
        except BaseException:
            self._release_uid()
            raise
        os.chmod(self._stage.parent, 0o711)  # noqa: S103 - traversable, not listable
        # only the sandbox's uid (and root) may enter: staged contexts are confidential
        self._own(self._stage)
        self._work = cache_root() / "work" / self._id   # the fallback's private cwd
        if not backend._bwrap:
            self._work.mkdir(parents=True, mode=0o700)
            os.chmod(self._work.parent, 0o711)  # noqa: S103 - traversable, not listable
            self._own(self._work)
        try:
            if backend._cgroups:
                lim = spec.limits
                self._cgroup = Cgroup(self._id, CgroupLimits(
                    lim.memory_bytes, lim.pids, lim.cpu_cores), backend._cgroups)
            self._proc, self._init_pid = spawner.spawn(self._start)
            if self._init_pid is not None:
                bwrap = self._proc.pid   # our child, not yet reaped: its pid is still its own
                self._init = PinnedProcess.pin(self._init_pid,
                                               lambda pid: parent_of(pid) == bwrap)
            self._channel = FrameChannel(self._proc.stdout.fileno(),  # type: ignore[union-attr]
                                         self._proc.stdin.fileno())  # type: ignore[union-attr]
            self._agent_pid = self._await_ready()
            self._agent = self._pin_agent()
            if self._cgroup is not None:
                self._cpu_watch = shared_poller(CPU_WATCH_INTERVAL_S).watch(
                    self._cpu_tick(self._cgroup))
        except BaseException:
            self.kill()
            raise

    def _cpu_tick(self, group: Cgroup) -> Callable[[], bool]:
        """The shared poller's check of this sandbox: kills it once its processes together
        used ``cpu_seconds`` (RLIMIT_CPU binds each process alone, so a cell that forks
        would get it once per child). While the sandbox is busy it runs at the least CPU
        weight, so another sandbox's short cell (another tenant's, in the daemon) is not
        queued behind it on a busy host."""
        limit = self._spec.limits.cpu_seconds
        used, seen = group.cpu_seconds(), time.monotonic()
        yielding = False

        def tick() -> bool:
            nonlocal used, seen, yielding
            if self._stopped.is_set():
                return False
            now_used, now = group.cpu_seconds(), time.monotonic()
            if now_used >= limit:
                self._cpu_spent = True
                off_the_sweep(self.kill, self._id)
                return False
            busy = now_used - used > BUSY_CORE_SHARE * (now - seen)
            used, seen = now_used, now
            if busy != yielding:
                try:
                    group.yield_cpu(busy)
                except OSError:   # the group went with a dying sandbox; cpu_seconds holds
                    return True
                yielding = busy
            return True

        return tick

    # --- start ------------------------------------------------------------------------

    def _argv(self, python: Path, info_fd: int | None) -> list[str]:
        confine = "--confine=" + json.dumps({
            "seccomp": self._spec.seccomp, "landlock": self._spec.landlock,
            "writable": self.writable_paths()}, separators=(",", ":"))
        agent = [str(python), "-I", "-B", _AGENT_INSIDE, confine]
        entry = jail_entry_argv(self._spec.limits, self._cgroup,
                                bwrap=self._backend._bwrap is not None,
                                uid=None if self._uid is None else self._uid.uid)
        if not self._backend._bwrap:
            return [*entry, str(python), "-I", "-B", str(agent_bundle_dir() / "agent.py"),
                    confine]
        binds = [(agent_bundle_dir(), "/rlmbox/agent"), (self._stage, _STAGE_INSIDE)]
        if self._spec.environment is not None:
            binds.append((self._spec.environment, ENVIRONMENT_MOUNT))
        return [*entry, *bwrap_argv(self._backend._bwrap, python, binds,
                                    tmpfs_bytes=self._spec.limits.disk_bytes,
                                    shm_bytes=self._spec.limits.shm_bytes, info_fd=info_fd,
                                    as_nobody=self._uid is not None), *agent]

    def _start(self) -> tuple[subprocess.Popen[bytes], int | None]:
        python = sandbox_python(self._backend._drop_uid)
        info_r, info_w = os.pipe() if self._backend._bwrap else (-1, -1)
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
        if not self._backend._bwrap:
            env.update(HOME=str(self._work), TMPDIR=str(self._work))
        try:   # no preexec_fn: with none, the host vforks (jail_entry_argv says why)
            proc = subprocess.Popen(
                self._argv(python, info_w if info_w >= 0 else None),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=env, close_fds=True,
                pass_fds=(info_w,) if info_w >= 0 else (),
                cwd=self._work if not self._backend._bwrap else None,
                start_new_session=True)
        except BaseException as exc:   # the read end too: nothing will read it
            if info_r >= 0:
                os.close(info_r)
            if isinstance(exc, OSError):
                raise SandboxUnavailable(f"cannot start the sandbox: {exc}") from exc
            raise
        finally:
            if info_w >= 0:
                os.close(info_w)
        init_pid: int | None = None
        if info_r >= 0:
            with os.fdopen(info_r, "rb") as info:
                raw = info.read(4096)
            with contextlib.suppress(ValueError):
                init_pid = int(json.loads(raw or b"{}").get("child-pid", 0)) or None
        return proc, init_pid

    def _await_ready(self) -> int:
        try:
            frame = self._channel.recv(READY_TIMEOUT_S) if self._proc.poll() is None else None
        except SandboxCrashed:   # exited before its ready frame: a jail step failed
            frame = None
        if frame is None or frame["t"] != "ready":
            detail = self._startup_stderr()
            raise SandboxUnavailable(f"the sandbox did not start: {detail or 'no ready frame'}")
        self._close_stderr()
        return self._find_agent_pid()

    def _find_agent_pid(self) -> int:
        """The agent's host pid, measured on the host (the ready frame's pid is untrusted)."""
        if self._init_pid is None:
            return self._proc.pid
        children = Path(f"/proc/{self._init_pid}/task/{self._init_pid}/children")
        with contextlib.suppress(OSError, ValueError):
            pids = children.read_text().split()
            if pids:
                return int(pids[0])
        return self._init_pid

    def _pin_agent(self) -> PinnedProcess:
        """The agent held by a pidfd, so an interrupt never reaches a later holder of its
        pid; checked to be the child of the process that started it."""
        parent = self._init_pid if self._init_pid is not None else os.getpid()
        agent = PinnedProcess.pin(self._agent_pid, lambda pid: parent_of(pid) == parent)
        if agent is None:
            raise SandboxUnavailable("the sandbox's agent exited during start-up")
        return agent

    def host_view(self) -> HostView:
        """What the host sees of this sandbox's agent: its pid namespace, uid, cgroup."""
        try:
            agent_ns = os.readlink(f"/proc/{self._agent_pid}/ns/pid")
            own_ns = agent_ns != os.readlink("/proc/self/ns/pid") and self._init is not None
            uids = Path(f"/proc/{self._agent_pid}/status").read_text().split("Uid:")[1]
            non_root = "0" not in uids.splitlines()[0].split()
        except (OSError, IndexError):
            return HostView(own_pid_namespace=False, non_root=False, cgroup_enforced=False)
        group = self._cgroup
        enforced = group is not None and group.holds(self._agent_pid) and group.enforces(
            CgroupLimits(self._spec.limits.memory_bytes, self._spec.limits.pids,
                         self._spec.limits.cpu_cores))
        return HostView(own_pid_namespace=own_ns, non_root=non_root, cgroup_enforced=enforced)

    def _startup_stderr(self) -> str:
        if self._proc.poll() is None:
            self._proc.kill()
        stderr = self._proc.stderr
        text = stderr.read(8192).decode(errors="replace").strip() if stderr else ""
        return text.splitlines()[-1] if text else ""

    def _close_stderr(self) -> None:
        if self._proc.stderr is not None:
            self._proc.stderr.close()

    # --- Sandbox protocol -----------------------------------------------------------

    @property
    def info(self) -> SandboxInfo:
        runtime = "bwrap" if self._backend._bwrap else "rlimits"
        return SandboxInfo(backend="process", sandbox_id=self._id, runtime=runtime,
                           transport="pipe")

    @property
    def properties(self) -> frozenset[IsolationProperty]:
        return self._backend.properties()

    @property
    def spec(self) -> SandboxSpec:
        return self._spec

    def _own(self, path: Path) -> None:
        if self._uid is not None:
            os.chown(path, self._uid.uid, self._uid.uid)

    def _release_uid(self) -> None:
        """Returns the uid once no process can still run as it: after the cgroup is
        removed cleanly (or, without one, once the pid namespace's init is dead). A
        sandbox whose cgroup would not empty keeps its uid leased: nothing reuses it."""
        if self._uid is not None and not self._cleanup_problems:
            self._uid.release()

    def stage(self, source: Path, name: str) -> str:
        """Hard-links ``source`` into the private stage directory when the sandbox uid may
        read the file itself (no copy of a 1 GB context); copies it otherwise."""
        target = self._stage / name
        try:
            if self._backend._drop_uid and not source.stat().st_mode & 0o004:
                raise PermissionError("not readable by the sandbox uid: copy instead")
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
            os.chmod(target, 0o644)
        if not self._backend._bwrap:
            return str(target)
        return f"{_STAGE_INSIDE}/{name}"

    def cleanup_problems(self) -> list[str]:
        return list(self._cleanup_problems)

    def writable_paths(self) -> list[str]:
        """The size-capped tmpfs mounts and the device files code may write; without
        bwrap the host's /dev/shm is shared with the host, so it is not among them."""
        if self._backend._bwrap:
            return ["/tmp", "/dev/shm", *WRITABLE_DEVICES]
        return [str(self._work), *WRITABLE_DEVICES]

    def count_mapped(self, nbytes: int) -> bool:
        """The cgroup's memory limit is lowered by the mapped bytes; without a cgroup
        (not root) there is no memory limit to keep, so mapping costs the host less."""
        if self._cgroup is None:
            return True
        try:
            return self._cgroup.take_from_memory(nbytes)
        except OSError:
            return False

    def environment_path(self) -> str | None:
        if self._spec.environment is None:
            return None
        return ENVIRONMENT_MOUNT if self._backend._bwrap else str(self._spec.environment)

    def host_pids(self) -> list[int]:
        """Host pids of the sandbox's own processes (bwrap, then the namespace's init),
        so a daemon can record them and kill a survivor after it crashed."""
        pids = [self._proc.pid]
        if self._init_pid is not None:
            pids.append(self._init_pid)
        return pids

    def send(self, frame: Frame, timeout: float | None = None) -> None:
        self._channel.send(frame, timeout)

    def recv(self, timeout: float | None) -> Frame | None:
        return self._channel.recv(timeout)

    def interrupt(self) -> None:
        if self._agent is not None:
            self._agent.signal(signal.SIGINT)

    def death_reason(self) -> str | None:
        code = self._proc.poll() if getattr(self, "_proc", None) is not None else None
        if code is None and not self._dead:
            return None
        self._note_cgroup_events()
        if self._cpu_spent:
            return (f"the CPU time limit was reached (cpu_seconds, "
                    f"{self._spec.limits.cpu_seconds} s for all the sandbox's processes)")
        if self._oom:
            return "out of memory (the memory limit was reached)"
        if self._pids_hit and code not in (None, 0):
            return "the pids limit was reached"
        return f"the sandbox exited with status {code}"

    def _note_cgroup_events(self) -> None:
        if self._cgroup is not None and not self._cgroup_removed:
            self._oom = self._oom or self._cgroup.oom_killed()
            self._pids_hit = self._pids_hit or self._cgroup.pids_exhausted()

    def kill(self) -> None:
        self._stopped.set()
        if self._cpu_watch is not None:
            self._cpu_watch.stop()
        if self._init is not None:
            self._init.signal(signal.SIGKILL)   # the pid-ns init: takes all with it
        if getattr(self, "_proc", None) is not None:
            # only while bwrap is unreaped does its pid (and group id) still name it
            if self._proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._proc.pid, signal.SIGKILL)
            wait_child(self._proc, timeout=TREE_EXIT_TIMEOUT_S)
        if self._init is not None:
            # the kernel kills and waits for every process of the namespace before its
            # init finishes exiting: woken at that exit, the cgroup is then found empty
            # at its first look (polling it with doubling sleeps saw it up to 2x late)
            self._init.exited(TREE_EXIT_TIMEOUT_S)
        if getattr(self, "_channel", None) is not None:
            self._channel.close()   # before its fds: a recv on another thread wakes
        if getattr(self, "_proc", None) is not None:
            for stream in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
                with contextlib.suppress(OSError):
                    if stream is not None:
                        stream.close()
        for pinned in (self._init, self._agent):
            if pinned is not None:
                pinned.release()
        self._note_cgroup_events()
        if self._cgroup is not None and not self._cgroup_removed:
            # kills any process left first (setsid escapees included)
            self._cleanup_problems = self._cgroup.remove()
            self._cgroup_removed = True
        self._dead = True
        shutil.rmtree(self._stage, ignore_errors=True)
        shutil.rmtree(self._work, ignore_errors=True)
        self._release_uid()
