"""The ``e2b`` backend: one E2B microVM per sandbox, the same agent and frames as locally.

``create`` makes a sandbox from the policy's template (internet off unless the policy
turns it on, tagged with rlmbox's owner metadata), uploads the zipped agent bundle with the
files API, starts it as a long-running process and waits for its ``ready`` frame; frames
then travel over that process's stdin/stdout through envd (``agent_process.py``). Host
functions are served by the host exactly as for local backends: the VM never holds a
credential and rlmbox opens no port in it. Any failure on the way kills the sandbox.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from pathlib import Path
from typing import Any, Final

from rlmbox.errors import SandboxCrashed, SandboxError, SandboxUnavailable
from rlmbox.sandboxes.base import (
    BackendReport,
    IsolationProperty,
    SandboxInfo,
    SandboxSpec,
)
from rlmbox.sandboxes.channel import FrameChannel
from rlmbox.sandboxes.e2b import properties as props
from rlmbox.sandboxes.e2b.agent_process import AgentProcess
from rlmbox.sandboxes.e2b.bundle_zip import agent_zip
from rlmbox.sandboxes.e2b.calls import Backoff, call, classify, describe
from rlmbox.sandboxes.e2b.config import E2BConnection
from rlmbox.sandboxes.e2b.launch import agent_argv
from rlmbox.sandboxes.e2b.options import E2BOptions
from rlmbox.sandboxes.e2b.orphans import collect_orphans, kill_by_tag
from rlmbox.sandboxes.owner import LABEL_SESSION, Owner
from rlmbox.sandboxes.probe import observed_properties, run_probe
from rlmbox.sandboxes.protocol import PROTOCOL_VERSION, Frame

READY_TIMEOUT_S: Final = 60.0
HOME: Final = "/home/user"
RLMBOX_DIR: Final = f"{HOME}/.rlmbox"
STAGE_DIR: Final = f"{RLMBOX_DIR}/stage"
# device files code may open for writing (Landlock), as in the process backend
WRITABLE: Final = ("/tmp", "/dev/shm", "/dev/null", "/dev/zero", "/dev/full",
                   "/dev/random", "/dev/urandom", "/dev/tty", "/dev/pts")


def load_sdk() -> Any:
    """The SDK's sandbox class; imported only when an e2b sandbox is wanted."""
    try:
        from e2b_code_interpreter import Sandbox  # noqa: PLC0415 - optional dependency
    except ImportError as exc:
        raise SandboxUnavailable(
            "the E2B SDK is not installed: pip install 'rlmbox[e2b]'") from exc
    return Sandbox


class E2BBackend:
    """Creates sandboxes on one E2B account (the host's, from its environment)."""

    name = "e2b"

    def __init__(self, connection: E2BConnection | None = None, *,
                 owner: Owner | None = None, backoff: Backoff | None = None,
                 ready_timeout: float = READY_TIMEOUT_S) -> None:
        self._connection = connection
        self._owner = owner or Owner.current()
        self.backoff = backoff or Backoff()
        self._ready_timeout = ready_timeout
        self._report: BackendReport | None = None
        self._collected = False
        self._lock = threading.Lock()

    @property
    def connection(self) -> E2BConnection:
        if self._connection is None:
            self._connection = E2BConnection.from_env()
        return self._connection

    def params(self) -> dict[str, Any]:
        return self.connection.sdk_params()

    # --- probing ---------------------------------------------------------------------------

    def probe(self) -> BackendReport:
        """Starts a real sandbox (internet off), runs the probe cell in it and reports the
        properties it demonstrated beside those E2B attests."""
        attested = props.attested(internet=False)
        try:
            spec = SandboxSpec()
            sandbox = self.create(spec)
            try:
                run = run_probe(sandbox, READY_TIMEOUT_S)
            finally:
                sandbox.kill()
        except SandboxError as exc:
            self._report = BackendReport(self.name, False, str(exc), attested=attested)
            return self._report
        if not run.ok:
            self._report = BackendReport(self.name, False, "the probe cell failed in the VM",
                                         attested=attested)
            return self._report
        measured = observed_properties(run.facts, spec.limits) & props.PROBED
        self._report = BackendReport(
            self.name, True, f"E2B at {self.connection.where}; template "
            f"{spec.e2b.template}; Firecracker microVM (provider-attested)",
            measured | attested, attested=attested - measured)
        return self._report

    def properties(self) -> frozenset[IsolationProperty]:
        """Measured and provider-attested properties (probing once, then cached)."""
        report = self._report if self._report is not None else self.probe()
        if not report.available:
            raise SandboxUnavailable(report.detail)
        return report.properties

    def remedy(self, missing: frozenset[IsolationProperty]) -> str:
        if IsolationProperty.NETWORK_NONE in missing:
            return "keep isolation.e2b.internet false (E2B then blocks the VM's traffic)"
        if IsolationProperty.USER_SPACE_KERNEL in missing:
            return ("an E2B microVM runs its own guest kernel, not gVisor: use "
                    "hardware_virtualization, or backend docker with runtime runsc")
        return ""

    def collect_garbage(self) -> list[str]:
        """Kills this account's sandboxes whose rlmbox owner process is gone."""
        self._collected = True
        return collect_orphans(load_sdk(), self.params())

    # --- creating ----------------------------------------------------------------------------

    def create(self, spec: SandboxSpec) -> E2BSandbox:
        """Creates a VM, uploads and starts the agent, waits for ``ready``."""
        if spec.environment is not None:
            raise SandboxUnavailable(
                "a package environment is bound from this machine's disk, which an E2B VM "
                "cannot see: install the packages in the E2B template instead")
        sdk = load_sdk()
        with self._lock:
            collect = not self._collected
            self._collected = True
        if collect:
            with contextlib.suppress(SandboxUnavailable):   # best effort at first use
                collect_orphans(sdk, self.params())
        name = "rlmbox-" + secrets.token_hex(8)
        options = spec.e2b
        metadata = {**dict(options.metadata), **self._owner.labels(name, options.tenant)}
        try:
            vm = call(f"creating an E2B sandbox from template {options.template!r}",
                      lambda: sdk.create(template=options.template, timeout=options.timeout_s,
                                         metadata=metadata,
                                         allow_internet_access=options.internet,
                                         **self.params()),
                      backoff=self.backoff, creating=True)
        except SandboxUnavailable:
            # a create whose answer was lost may still have made a VM: find it by its tag
            kill_by_tag(sdk, self.params(), LABEL_SESSION, name)
            raise
        sandbox = E2BSandbox(self, vm, name, spec)
        try:
            sandbox.start(self._ready_timeout)
        except BaseException:
            sandbox.kill()
            raise
        return sandbox


class E2BSandbox:
    """One E2B VM holding one agent. Never reused across sessions; ``kill`` is idempotent."""

    def __init__(self, backend: E2BBackend, vm: Any, name: str, spec: SandboxSpec) -> None:
        self._backend = backend
        self._vm = vm
        self._name = name
        self._options: E2BOptions = spec.e2b
        self._limits = spec.limits
        self._agent: AgentProcess | None = None
        self._death: str | None = None
        self._killed = False
        self._kill_lock = threading.Lock()
        self._problems: list[str] = []
        self._info = SandboxInfo(backend="e2b", sandbox_id=vm.sandbox_id,
                                 image=self._options.template, transport="envd-process")

    @property
    def name(self) -> str:
        """rlmbox's name for it, tagged as the session metadata."""
        return self._name

    @property
    def sandbox_id(self) -> str:
        return str(self._vm.sandbox_id)

    def start(self, timeout: float) -> None:
        """Checks the template's size, uploads the agent, starts it, awaits ``ready``."""
        self._check_size()
        zip_name, zip_bytes = agent_zip()
        path = f"{RLMBOX_DIR}/{zip_name}"
        self._upload(path, zip_bytes)
        argv = agent_argv(path, self._limits, {
            "seccomp": True, "landlock": True, "writable": self.writable_paths()})
        self._agent = call("starting the agent in the E2B sandbox",
                           lambda: AgentProcess(self._vm, argv, HOME, start_timeout=timeout),
                           backoff=self._backend.backoff)
        try:
            frame = self._agent.channel.recv(timeout)
        except SandboxCrashed as exc:
            raise SandboxCrashed(f"the agent in E2B sandbox {self.sandbox_id} ended before it "
                                 f"was ready: {self._agent.ended or exc}"
                                 f"{self._stderr_note()}") from exc
        if frame is None:
            raise SandboxUnavailable(f"the agent in E2B sandbox {self.sandbox_id} was not "
                                     f"ready within {timeout:.0f} s{self._stderr_note()}")
        if frame.get("t") != "ready" or frame.get("version") != PROTOCOL_VERSION:
            raise SandboxCrashed(f"the agent's first frame was not ready/v{PROTOCOL_VERSION}")

    def _check_size(self) -> None:
        info = call("reading the E2B sandbox's size", self._vm.get_info,
                    backoff=self._backend.backoff)
        cpu, memory = int(info.cpu_count), int(info.memory_mb)
        if cpu < self._options.cpu or memory < self._options.memory_mb:
            raise SandboxUnavailable(
                f"the template {self._options.template!r} gives {cpu} CPUs and {memory} MB, "
                f"the policy expects at least {self._options.cpu} CPUs and "
                f"{self._options.memory_mb} MB (isolation.e2b.cpu, memory_mb): rebuild the "
                "template or lower the policy's figures (template)")

    def _upload(self, path: str, data: Any) -> None:
        call(f"uploading {path} to the E2B sandbox",
             lambda: self._vm.files.write(path, data, use_octet_stream=True),
             backoff=self._backend.backoff)

    def _stderr_note(self) -> str:
        tail = self._agent.stderr_tail.strip() if self._agent is not None else ""
        return f"; stderr: {tail[-500:]}" if tail else ""

    # --- Sandbox protocol ---------------------------------------------------------------

    @property
    def info(self) -> SandboxInfo:
        return self._info

    @property
    def properties(self) -> frozenset[IsolationProperty]:
        """The backend's properties, without ``network_none`` when internet is on."""
        found = self._backend.properties()
        if self._options.internet:
            found -= props.OFFLINE_ATTESTED
        return found

    def stage(self, source: Path, name: str) -> str:
        """Uploads a host file into the VM, streamed from disk (a 1 GB context never sits
        in memory or in frames)."""
        inside = f"{STAGE_DIR}/{name}"
        with source.open("rb") as handle:
            self._upload(inside, handle)
        return inside

    def writable_paths(self) -> list[str]:
        return list(WRITABLE)

    def environment_path(self) -> str | None:
        return None

    def count_mapped(self, nbytes: int) -> bool:
        return False   # the VM's own accounting is not observed from here: decode

    def send(self, frame: Frame, timeout: float | None = None) -> None:
        self._channel().send(frame, timeout)

    def recv(self, timeout: float | None) -> Frame | None:
        try:
            return self._channel().recv(timeout)
        except SandboxCrashed as exc:
            raise SandboxCrashed(f"{exc}: {self.death_reason() or 'unknown'}") from exc

    def _channel(self) -> FrameChannel:
        if self._agent is None:
            raise SandboxCrashed("the agent was never started")
        return self._agent.channel

    def interrupt(self) -> None:
        """SIGINT to the agent: envd signals only TERM and KILL, so a second process in
        the VM sends it (``kill -INT`` with envd's pid of the agent, not the agent's word)."""
        if self._agent is None or self._killed:
            return
        pid = self._agent.pid
        with contextlib.suppress(SandboxError):
            call("interrupting the agent", lambda: self._vm.commands.run(
                f"kill -INT {pid}", timeout=10), backoff=Backoff(attempts=2))

    def death_reason(self) -> str | None:
        if self._death is not None:
            return self._death
        ended = self._agent.ended if self._agent is not None else None
        if ended is None:
            return None
        self._death = ended + self._gone_note()
        return self._death

    def _gone_note(self) -> str:
        """Whether E2B still has the sandbox: a missing one expired or was killed."""
        try:
            running = bool(self._vm.is_running(request_timeout=5))
        except Exception as exc:
            return f" (E2B could not say whether the sandbox runs: {describe(exc, classify(exc))})"
        if running:
            return ""
        return (f" (the E2B sandbox is gone: it expired after isolation.e2b.timeout_s = "
                f"{self._options.timeout_s} s, or was killed)")

    def kill(self) -> None:
        """Kills the VM (everything in it) and stops the bridge threads. Idempotent."""
        with self._kill_lock:
            if self._killed:
                return
            self._killed = True
        self._death = self.death_reason() or "killed by the host"
        try:
            call(f"killing E2B sandbox {self.sandbox_id}",
                 self._vm.kill, backoff=self._backend.backoff)
        except SandboxUnavailable:
            self._problems = [f"E2B sandbox {self.sandbox_id} may still run: the kill failed "
                              "(rlmbox gc kills it once this process is gone)"]
        finally:
            if self._agent is not None:
                self._agent.close()

    def cleanup_problems(self) -> list[str]:
        return list(self._problems)


__all__ = ["E2BBackend", "E2BSandbox", "load_sdk"]
