"""Docker engine backend: one hardened container per sandbox, runtime ``runc`` or ``runsc``.

The agent runs as the container's main process with the protocol on its attached stdio,
which works with gVisor and with a remote engine alike; with runc on a local engine it
speaks on a per-sandbox Unix socket instead (``socket_transport.py``), which is faster. A
container is created, attached and started, and ``create`` returns only after the agent's
``ready`` frame; any failure on the way removes the container, so no ``Created``
container or shim is left behind.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import tempfile
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final, Protocol

from rlmbox.errors import SandboxCrashed, SandboxError, SandboxUnavailable
from rlmbox.sandboxes.base import (
    ENVIRONMENT_MOUNT,
    BackendReport,
    IsolationProperty,
    SandboxInfo,
    SandboxSpec,
)
from rlmbox.sandboxes.docker import config as cfg
from rlmbox.sandboxes.docker.cpu_watch import CpuWatch, cpu_usage_file
from rlmbox.sandboxes.docker.engine import connect, is_local, runtimes, translated
from rlmbox.sandboxes.docker.host_kill import REMOVALS, ContainerProcesses
from rlmbox.sandboxes.docker.owner import LABEL_SOCKET_DIR, LABEL_STAGE_DIR, collect_garbage
from rlmbox.sandboxes.docker.socket_transport import (
    SocketListener,
    choose_transport,
    default_socket_root,
)
from rlmbox.sandboxes.docker.stage import ArchiveStager, BindStager, Stager
from rlmbox.sandboxes.docker.stdio_transport import AttachedStream
from rlmbox.sandboxes.owner import Owner
from rlmbox.sandboxes.probe import observed_properties, run_probe
from rlmbox.sandboxes.protocol import PROTOCOL_VERSION, Frame

RUNTIMES: Final = ("runc", "runsc")
READY_TIMEOUT_S: Final = 60.0     # runsc on ptrace boots in ~1 s; a loaded CI host is slower
DEATH_SETTLE_S: Final = 3.0       # the engine records OOMKilled/ExitCode shortly after EOF
RUNSC_SANDBOX_DIED: Final = 2     # runsc's own exit status when the sentry fails


def default_stage_root() -> Path:
    return Path(tempfile.gettempdir()) / f"rlmbox-stage-{os.getuid()}"


class Frames(Protocol):
    """A frame transport: the attach stream or an accepted socket."""

    def send(self, frame: Frame, timeout: float | None = None) -> None: ...
    def recv(self, timeout: float | None) -> Frame | None: ...
    def close(self) -> None: ...


@dataclass
class Prepared:
    """A created, attached, not yet started container (cheap to hold: no process runs).

    With the socket transport ``listener`` already listens and ``stream`` (stdout and
    stderr only) just watches start-up: its end means the agent died before connecting.
    """

    container_id: str
    name: str
    spec: SandboxSpec
    image: str
    stream: AttachedStream
    stager: Stager
    listener: SocketListener | None = None

    @property
    def transport(self) -> str:
        return "stdio" if self.listener is None else "socket"


class DockerBackend:
    """Creates hardened containers on one engine with one runtime."""

    def __init__(self, runtime: str = "runc", *, image: str | None = None,
                 agent_dir: Path | None = None, client: Any = None,
                 owner: Owner | None = None, stage_mode: str = "auto",
                 stage_root: Path | None = None,
                 ready_timeout: float = READY_TIMEOUT_S, transport: str = "auto",
                 socket_root: Path | None = None) -> None:
        if runtime not in RUNTIMES:
            raise SandboxUnavailable(f"unknown Docker runtime {runtime!r}; use one of {RUNTIMES}")
        if stage_mode not in ("auto", "bind", "archive"):
            raise ValueError(f"stage_mode must be auto, bind or archive, not {stage_mode!r}")
        if transport not in cfg.TRANSPORTS:
            raise ValueError(f"transport must be one of {cfg.TRANSPORTS}, not {transport!r}")
        self.name = "docker"
        self.runtime = runtime
        self._image = image
        self._agent_dir = agent_dir
        self._client = client
        self._owner = owner or Owner.current()
        self._stage_mode = stage_mode
        self._stage_root = stage_root or default_stage_root()
        self._ready_timeout = ready_timeout
        self._requested_transport = transport
        self._transport: str | None = None
        self._socket_root = socket_root or default_socket_root()
        self._collected = False
        self._properties: frozenset[IsolationProperty] | None = None

    # -- engine ---------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = connect()
        return self._client

    @property
    def transport(self) -> str:
        """``stdio`` or ``socket``: what this backend's sandboxes speak over. ``auto`` is
        the socket where it can run (runc, a local engine, a root host), else stdio."""
        if self._transport is None:
            self._transport = choose_transport(self._requested_transport, self.runtime,
                                               self.client)
        return self._transport

    def _bind_staging(self) -> bool:
        if self._stage_mode == "auto":
            return is_local(self.client)
        return self._stage_mode == "bind"

    def image(self) -> str:
        if self._image is None:
            from rlmbox.sandboxes.images.build import find_image  # noqa: PLC0415 - cycle-free

            found = find_image(self.client)
            if found is None:
                raise SandboxUnavailable(
                    "the rlmbox sandbox image is not built for this version; run "
                    "'rlmbox image build' (or 'bash scripts/provision.sh' as root)")
            self._image = found
        return self._image

    def agent_dir(self) -> Path:
        if self._agent_dir is None:
            from rlmbox.sandboxes.bundle import agent_bundle_dir  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415

            self._agent_dir = Path(agent_bundle_dir())
        return self._agent_dir

    def probe(self) -> BackendReport:
        """Starts a real container, runs the probe cell, reports what it demonstrated."""
        label = f"docker/{self.runtime}"
        try:
            available = runtimes(self.client)
            if self.runtime not in available:
                return BackendReport(label, False, f"the engine has no {self.runtime} runtime "
                                     f"(has: {', '.join(sorted(available))}); as root run "
                                     "'bash scripts/provision.sh'")
            image = self.image()
            spec = SandboxSpec()
            sandbox = self.create(spec)
            try:
                run = run_probe(sandbox, READY_TIMEOUT_S)
            finally:
                sandbox.kill()
            facts, ok = run.facts, run.ok
        except SandboxError as exc:
            return BackendReport(label, False, str(exc))
        declared = cfg.engine_enforced(self.runtime) & cfg.properties_for(self.runtime)
        # a failed probe demonstrates nothing, so the engine's settings count for nothing
        props = (observed_properties(facts, spec.limits) | declared) \
            & cfg.properties_for(self.runtime) if ok else frozenset()
        self._properties = props
        return BackendReport(label, ok, f"engine answers; image {image}"
                             if ok else "the probe cell failed", props, declared)

    def properties(self) -> frozenset[IsolationProperty]:
        """The properties a probe demonstrated (probing once, then cached)."""
        if self._properties is None:
            report = self.probe()
            if not report.available:
                raise SandboxUnavailable(report.detail)
            return report.properties
        return self._properties

    def remedy(self, missing: frozenset[IsolationProperty]) -> str:
        if IsolationProperty.USER_SPACE_KERNEL in missing and self.runtime != "runsc":
            return "use isolation.runtime: runsc (gVisor; as root: bash scripts/provision.sh)"
        return ""

    def collect_garbage(self) -> list[str]:
        """Removes containers and volumes whose owner process is gone (``rlmbox gc``)."""
        self._collected = True
        return collect_garbage(self.client, self._stage_root, self._socket_root)

    # -- creating sandboxes ---------------------------------------------------------------

    def create(self, spec: SandboxSpec) -> DockerSandbox:
        """Starts a sandbox and waits for its agent's ``ready`` frame."""
        return self.start(self.prepare(spec))

    def prepare(self, spec: SandboxSpec) -> Prepared:
        """Creates and attaches a container without starting it (a pool's cheap half)."""
        if spec.runtime not in (None, self.runtime):
            raise SandboxUnavailable(
                f"this backend runs {self.runtime}, the spec asks for {spec.runtime}")
        if not self._collected:
            self.collect_garbage()
        image = spec.image or self.image()
        name = f"rlmbox-{uuid.uuid4().hex[:16]}"
        labels = self._owner.labels(session=name)
        stager: Stager
        if self._bind_staging():
            stager = BindStager.create(self._stage_root, name)
            labels[LABEL_STAGE_DIR] = str(stager.host_dir)
            mounts = cfg.Mounts(agent_dir=self.agent_dir(), context_dir=stager.host_dir)
        else:
            stager = ArchiveStager.create(self.client, image, name, labels)
            mounts = cfg.Mounts(agent_dir=self.agent_dir(), context_volume=stager.volume)
        if spec.environment is not None:
            if not self._bind_staging():
                stager.discard()
                raise SandboxUnavailable(
                    "a package environment is bound from this machine's disk, which a "
                    "remote Docker engine cannot see; run the daemon beside the engine")
            mounts = replace(mounts, environment_dir=spec.environment)
        transport = self.transport
        container_id: str | None = None
        listener: SocketListener | None = None
        try:
            if transport == "socket":
                listener = SocketListener.create(self._socket_root, name)
                labels[LABEL_SOCKET_DIR] = str(listener.host_dir)
                mounts = replace(mounts, socket_dir=listener.host_dir)
            with translated(f"creating container {name}"):
                api = self.client.api
                created = api.create_container(
                    image=image, command=cfg.agent_command(transport), name=name,
                    user=f"{cfg.SANDBOX_UID}:{cfg.SANDBOX_UID}", working_dir=cfg.WORKDIR,
                    stdin_open=transport == "stdio", tty=False, labels=labels,
                    environment={"HOME": cfg.WORKDIR, "LANG": "C.UTF-8"},
                    host_config=cfg.host_config(api, spec.limits, self.runtime, mounts))
                container_id = created["Id"]
                sock = api.attach_socket(container_id, params={
                    "stdin": int(transport == "stdio"), "stdout": 1, "stderr": 1,
                    "stream": 1})
            stream = AttachedStream(_raw_socket(sock), wrappers=_wrappers(sock))
        except BaseException:
            _remove(self.client, container_id or name)
            stager.discard()
            if listener is not None:
                listener.discard()
            raise
        return Prepared(container_id, name, spec, image, stream, stager, listener)

    def start(self, prepared: Prepared) -> DockerSandbox:
        """Starts a prepared container and waits for ``ready``; removes it on any failure."""
        sandbox = DockerSandbox(self, prepared)
        try:
            with translated(f"starting container {prepared.name}"):
                self.client.api.start(prepared.container_id)
            sandbox.wait_ready(self._ready_timeout)
            if is_local(self.client):
                sandbox.watch_from_host()
        except BaseException:
            sandbox.kill()
            raise
        return sandbox


class DockerSandbox:
    """One running container holding one agent. Never reused across sessions."""

    def __init__(self, backend: DockerBackend, prepared: Prepared) -> None:
        self._backend = backend
        self._client = backend.client
        self._prepared = prepared
        self._stream = prepared.stream
        self._frames: Frames = prepared.stream
        self._info = SandboxInfo(backend="docker", sandbox_id=prepared.name,
                                 runtime=backend.runtime, image=prepared.image,
                                 transport=prepared.transport)
        self._death: str | None = None
        self._killed = False
        self._cpu_watch: CpuWatch | None = None
        self._processes: ContainerProcesses | None = None
        self.agent_pid: int | None = None

    @property
    def info(self) -> SandboxInfo:
        return self._info

    @property
    def properties(self) -> frozenset[IsolationProperty]:
        return self._backend.properties()

    @property
    def container_id(self) -> str:
        return self._prepared.container_id

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        if self._prepared.listener is not None:
            self._frames = self._accept(self._prepared.listener, deadline, timeout)
        try:
            frame = self._frames.recv(max(0.0, deadline - time.monotonic()))
        except SandboxCrashed as exc:
            raise SandboxCrashed(f"the agent in {self._info.sandbox_id} ended before it was "
                                 f"ready: {self._why()}") from exc
        if frame is None:
            raise SandboxUnavailable(f"the agent in {self._info.sandbox_id} was not ready "
                                     f"within {timeout:.0f} s{self._stderr_note()}")
        if frame.get("t") != "ready" or frame.get("version") != PROTOCOL_VERSION:
            raise SandboxCrashed(f"the agent's first frame was not ready/v{PROTOCOL_VERSION}: "
                                 f"{str(frame)[:200]}")
        pid = frame.get("pid")
        self.agent_pid = pid if isinstance(pid, int) else None
        if self._frames is not self._stream:
            # The agent speaks on its socket now and its stdio carries nothing: let the
            # engine stop copying to us (the stderr tail read so far stays available).
            self._stream.close()

    def watch_from_host(self) -> None:
        """With the engine on this machine: pins the container's processes (so ``kill``
        can end them without the engine, see host_kill) and kills the container once they
        together used ``cpu_seconds`` (the ulimit binds each process alone)."""
        state = self._state() or {}
        pid = state.get("Pid")
        if isinstance(pid, int) and pid > 0:
            self._processes = ContainerProcesses.pin(pid, self.container_id)
        usage = cpu_usage_file(pid) if isinstance(pid, int) and pid > 0 else None
        if usage is None:
            raise SandboxUnavailable(
                f"cannot find the cgroup of {self._info.sandbox_id} (pid {pid}) to bound "
                "its CPU time")
        self._cpu_watch = CpuWatch(usage, self._prepared.spec.limits.cpu_seconds,
                                   self._cpu_spent, self._info.sandbox_id)

    def _cpu_spent(self) -> None:
        if self._death is None:
            self._death = (f"the CPU time limit was reached (cpu_seconds, "
                           f"{self._prepared.spec.limits.cpu_seconds} s for all the "
                           "sandbox's processes)")
        processes = self._processes
        if processes is not None:   # the host's own kill: a busy engine lets it burn on
            processes.kill_first()
        with contextlib.suppress(SandboxError), translated("killing at cpu_seconds"):
            self._client.api.kill(self.container_id, signal="SIGKILL")

    def _accept(self, listener: SocketListener, deadline: float, timeout: float) -> Frames:
        """Waits for the agent's connection; the attach stream's end means it died first."""
        with selectors.DefaultSelector() as sel:
            sel.register(listener.fileno(), selectors.EVENT_READ, "accept")
            sel.register(self._stream.fileno(), selectors.EVENT_READ, "attach")
            while (remaining := deadline - time.monotonic()) > 0:
                for key, _ in sel.select(remaining):
                    if key.data == "accept":
                        frames = listener.accept_from(self.container_id)
                        if frames is not None:
                            return frames
                        continue
                    try:
                        stray = self._stream.read_available()
                    except SandboxCrashed as exc:
                        raise SandboxCrashed(
                            f"the agent in {self._info.sandbox_id} ended before it "
                            f"connected: {self._why()}") from exc
                    if stray is not None:
                        raise SandboxCrashed(
                            f"the agent in {self._info.sandbox_id} spoke on stdio, not on "
                            "its socket (an agent without --connect?)")
        raise SandboxUnavailable(f"the agent in {self._info.sandbox_id} was not ready within "
                                 f"{timeout:.0f} s (it never connected to its socket)"
                                 f"{self._stderr_note()}")

    def cleanup_problems(self) -> list[str]:
        return []   # the engine removes the container with everything in it

    def writable_paths(self) -> list[str]:
        return ["/tmp", cfg.WORKDIR, "/dev"]

    def stage(self, source: Path, name: str) -> str:
        return self._prepared.stager.stage(source, name)

    def count_mapped(self, nbytes: int) -> bool:
        """gVisor's sentry charges a mapping of a bind-mounted file to the container (a
        review saw the limit hold); under runc the host's page cache would not be."""
        return self._backend.runtime == "runsc"

    def environment_path(self) -> str | None:
        return ENVIRONMENT_MOUNT if self._prepared.spec.environment is not None else None

    def send(self, frame: Frame, timeout: float | None = None) -> None:
        try:
            self._frames.send(frame, timeout)
        except SandboxCrashed as exc:
            raise SandboxCrashed(f"{exc}: {self._why()}") from exc

    def recv(self, timeout: float | None) -> Frame | None:
        try:
            return self._frames.recv(timeout)
        except SandboxCrashed as exc:
            raise SandboxCrashed(f"{exc}: {self._why()}") from exc

    def interrupt(self) -> None:
        """SIGINT to the agent (the container's main process) -> KeyboardInterrupt."""
        with contextlib.suppress(SandboxError), translated("interrupting"):
            self._client.api.kill(self.container_id, signal="SIGINT")

    def death_reason(self) -> str | None:
        if self._death is None and not self._killed:
            self._death = _death_from_state(self._state(), self._backend.runtime)
        return self._death

    def _why(self) -> str:
        deadline = time.monotonic() + DEATH_SETTLE_S
        while time.monotonic() < deadline:
            reason = self.death_reason()
            if reason is not None:
                return reason + self._stderr_note()
            time.sleep(0.05)
        return "the container is still running" + self._stderr_note()

    def _stderr_note(self) -> str:
        tail = self._stream.stderr_tail.strip()
        return f"; stderr: {tail[-500:]}" if tail else ""

    def _state(self) -> dict[str, Any] | None:
        import docker.errors  # noqa: PLC0415

        try:
            with translated(f"inspecting {self._info.sandbox_id}"):
                try:
                    state: dict[str, Any] = self._client.api.inspect_container(
                        self.container_id)["State"]
                except docker.errors.NotFound:
                    return None
        except SandboxError:
            return None
        return state

    def kill(self) -> None:
        """Ends every process of the container, then removes it and its staged context.
        Idempotent. With the engine on this machine the host kills the processes itself
        and returns once the container's cgroup is empty, the engine's removal following
        on a background thread (host_kill); otherwise the engine removes it here."""
        if self._killed:
            return
        if self._cpu_watch is not None:
            self._cpu_watch.stop()
        processes, self._processes = self._processes, None
        if self._death is None and (processes is None or processes.exited()):
            state = self._state()
            self._death = _death_from_state(state, self._backend.runtime)
        self._death = self._death or "killed by the host"
        self._killed = True
        ended = processes is not None and processes.kill_all()
        try:
            if not ended:
                _remove(self._client, self.container_id)
        finally:
            if self._frames is not self._stream:
                self._frames.close()
            self._stream.close()
            if self._prepared.listener is not None:
                self._prepared.listener.discard()
            stager = self._prepared.stager
            if not (ended and stager.discard_after_removal):
                stager.discard()
            if ended:
                REMOVALS.add(self._remove_after_kill)

    def _remove_after_kill(self) -> None:
        """The engine's part of ``kill`` once no process is left (on REMOVALS' thread); a
        context volume goes after its container."""
        try:
            # an engine error is raised to REMOVALS, which logs it (a container gone is fine)
            remove_retrying(self._client, self.container_id)
        finally:
            if self._prepared.stager.discard_after_removal:
                self._prepared.stager.discard()


def _death_from_state(state: dict[str, Any] | None, runtime: str) -> str | None:
    if state is None:
        return "the container is gone"
    if state.get("Running") or state.get("Status") in ("created", "restarting"):
        return None
    if state.get("OOMKilled"):
        return "out of memory"
    code = state.get("ExitCode")
    error = state.get("Error") or ""
    if runtime == "runsc" and code == RUNSC_SANDBOX_DIED:
        # gVisor's sentry dies as a whole when its host threads run into the pids cgroup,
        # e.g. under a fork bomb. The agent itself never exits with 2, so this is the sentry.
        return f"killed: the gVisor sandbox died (exit {code}), most likely at the pids limit"
    if code == 137:
        return "killed (SIGKILL, exit 137)"
    return f"exit {code}" + (f": {error}" if error else "")


def _raw_socket(sock: Any) -> Any:
    """The socket under docker-py's hijacked HTTP response (``SocketIO`` wraps it)."""
    return getattr(sock, "_sock", sock)


def _wrappers(sock: Any) -> tuple[Any, ...]:
    """docker-py's SocketIO and the HTTP response it keeps: closing them frees the fd."""
    response = getattr(sock, "_response", None)
    return (sock,) if response is None else (response, sock)


def _remove(client: Any, container: str, *, engine_errors_too: bool = True) -> None:
    """Removes a container; one already gone is not an error, nor (by default) an
    engine's refusal, which leaves the container for ``rlmbox gc``."""
    import docker.errors  # noqa: PLC0415

    quiet = ((docker.errors.NotFound, docker.errors.APIError) if engine_errors_too
             else (docker.errors.NotFound,))
    with contextlib.suppress(*quiet):
        client.api.remove_container(container, force=True, v=True)


#: waits before each new try of a removal the engine refused: Docker 20.10 answers 500
#: ("Could not kill running container ..., cannot remove - ... is not running") when the
#: container stops between its check and its kill; CI saw one left "Removal In Progress"
REMOVAL_RETRY_DELAYS_S: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)


def remove_retrying(client: Any, container: str) -> None:
    """``_remove`` off the closing path (REMOVALS' thread): an engine's refusal is tried
    again after each delay, then raised (REMOVALS logs it; ``rlmbox gc`` finds the rest)."""
    import docker.errors  # noqa: PLC0415

    for delay in (*REMOVAL_RETRY_DELAYS_S, None):
        try:
            _remove(client, container, engine_errors_too=False)
        except docker.errors.APIError:
            if delay is None:
                raise
            time.sleep(delay)
        else:
            return


__all__ = ["DockerBackend", "DockerSandbox", "Prepared", "default_stage_root"]
