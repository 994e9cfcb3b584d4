"""The harness of the attack corpus: backends, hostile-test policies, host targets, leak checks.

Every case runs on every backend that is available here. ``process`` always runs; the
docker cases run when ``rlmbox.sandboxes.docker.backend`` exists and an engine (and, for
``docker-runsc``, the runsc runtime) answers. With ``CI`` set, a missing engine or runtime
FAILS the docker cases instead of skipping them (a branch without the docker backend
module skips them, CI or not).

The host side of each test is real: canary files in a world-readable directory (so only
the sandbox's walls, not file modes, keep them out), listeners on the host's loopback,
a victim process running as the sandbox's own uid, and a check after every session that
no process of the sandbox is left.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rlmbox.audit.reader import iter_records
from rlmbox.audit.verify import verify_log
from rlmbox.lm.scripted import ScriptedLM
from rlmbox.runtime.results import ExecResult
from rlmbox.runtime.runtime import Runtime
from rlmbox.runtime.session import Session
from rlmbox.sandboxes.docker.host_kill import REMOVALS

# Docker cases join once the docker backend module exists (issue 5); from then on a
# missing engine or runtime fails them under CI instead of skipping.
# The e2b backend runs against the local test double (tests/e2b_double), never E2B.
BACKENDS = ("process",) + (
    ("docker-runc", "docker-runsc")
    if importlib.util.find_spec("rlmbox.sandboxes.docker.backend") is not None else ()) + (
    ("e2b",) if importlib.util.find_spec("rlmbox.sandboxes.e2b.backend") is not None else ())
SANDBOX_UID = 65534

# Small limits so exhaustion cases end in seconds. runsc's own threads count against the
# pids limit, so it needs a larger one to start at all (see issue 5).
BASE_LIMITS: dict[str, Any] = {
    "memory_mb": 256, "cpu_seconds": 60, "cpu_cores": 1.0, "pids": 64, "open_files": 128,
    "file_size_mb": 16, "disk_mb": 32, "output_bytes": 65536, "cell_timeout_s": 3,
    "session_timeout_s": 600, "interrupt_grace_s": 1,
}
BACKEND_LIMITS: dict[str, dict[str, Any]] = {"docker-runsc": {"pids": 256}}
ISOLATION: dict[str, dict[str, Any]] = {
    "process": {"backend": "process"},
    "docker-runc": {"backend": "docker", "runtime": "runc"},
    "docker-runsc": {"backend": "docker", "runtime": "runsc"},
    "e2b": {"backend": "e2b", "e2b": {"template": "rlmbox", "timeout_s": 600, "cpu": 1,
                                      "memory_mb": 256}},
}


# --- backend availability -------------------------------------------------------------------

@functools.cache
def docker_problem(runtime: str) -> str | None:
    """Why the docker backend with ``runtime`` cannot run here, or None when it can."""
    try:
        import docker

        client = docker.from_env(timeout=5)
        client.ping()
        runtimes = client.info().get("Runtimes", {})
    except Exception as exc:
        return f"no Docker engine answers: {type(exc).__name__}: {exc}"
    if runtime not in runtimes:
        return f"the Docker engine has no {runtime!r} runtime (has {sorted(runtimes)})"
    return None


def require_backend(name: str) -> None:
    """Skips (or, under CI, fails) a case whose backend cannot run here."""
    if name == "process":
        return
    if name == "e2b":
        require_e2b_double()
        return
    if importlib.util.find_spec("rlmbox.sandboxes.docker.backend") is None:
        # the backend itself is not built on this branch: nothing to require, even in CI
        pytest.skip(f"backend {name}: rlmbox.sandboxes.docker.backend is not on this branch yet")
    problem = docker_problem(name.split("-", 1)[1])
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"backend {name} is required in CI: {problem}")
    pytest.skip(f"backend {name} unavailable: {problem}")


def require_e2b_double() -> None:
    """Starts the E2B test double and points the backend at it; without the SDK the e2b
    cases skip (fail under CI, whose dev extra installs it)."""
    if importlib.util.find_spec("e2b_code_interpreter") is None:
        if os.environ.get("CI"):
            pytest.fail("the e2b backend is required in CI: e2b-code-interpreter is missing")
        pytest.skip("e2b-code-interpreter is not installed (pip install 'rlmbox[e2b]')")
    from e2b_double.env import live_requested, shared_double, use_live_e2b

    if live_requested():   # RLMBOX_E2B_LIVE=1 with E2B_API_KEY: the corpus on real E2B
        use_live_e2b()
    else:
        shared_double()


def skip_on_e2b(backend: str, reason: str) -> None:
    """A case whose subject the e2b backend does not have (it says why; the e2b tests
    in tests/e2b_backend cover what holds there instead)."""
    if backend == "e2b":
        pytest.skip(f"not applicable to e2b: {reason}")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each backend name in turn; unavailable ones skip (fail under CI)."""
    name: str = request.param
    require_backend(name)
    return name


# --- policies and runtimes ------------------------------------------------------------------

def policy_yaml(backend: str, *, limits: dict[str, Any] | None = None,
                rules: list[dict[str, Any]] | None = None,
                budgets: dict[str, Any] | None = None, **sections: Any) -> str:
    """A policy for hostile tests: small limits, no required properties (the tests
    themselves check each property), LM calls permitted unless ``rules`` says otherwise."""
    doc: dict[str, Any] = {
        "version": 1, "name": f"security-{backend}", "mode": "enforce",
        "limits": {**BASE_LIMITS, **BACKEND_LIMITS.get(backend, {}), **(limits or {})},
        "isolation": {**ISOLATION[backend], "require": []},
        "budgets": budgets or {"tree": {"calls": 50, "max_prompt_chars": 10000}},
        "rules": rules if rules is not None else [
            {"id": "permit-llm", "effect": "permit", "function": "llm_query"}],
        **sections,
    }
    return json.dumps(doc)   # JSON is YAML


@dataclass
class Runtimes:
    """Makes runtimes for one test, each with its own audit directory; closes them all."""

    backend: str
    root: Path
    made: list[Runtime] = field(default_factory=list)
    _count: itertools.count[int] = field(default_factory=itertools.count)

    def __call__(self, *, lm: Any = None, metrics: Any = None, **policy: Any) -> Runtime:
        n = next(self._count)
        path = self.root / f"policy-{n}.yaml"
        path.write_text(policy_yaml(self.backend, **policy))
        rt = Runtime(policy=path, lm=lm if lm is not None else ScriptedLM(default="lm-answer"),
                     audit_dir=self.root / f"audit-{n}", pool_size=0, metrics=metrics)
        self.made.append(rt)
        return rt

    def close(self) -> None:
        for rt in self.made:
            rt.close()


@pytest.fixture
def runtimes(backend: str, tmp_path: Path) -> Iterator[Runtimes]:
    factory = Runtimes(backend, tmp_path)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture
def runtime(runtimes: Runtimes) -> Runtime:
    """A runtime under the hostile-test policy of the current backend."""
    return runtimes()


def audit_records(rt: Runtime) -> list[dict[str, Any]]:
    """Every record the runtime has written so far (synced first)."""
    rt.audit.sync()
    directory = rt.audit_path.parent if rt.audit_path is not None else None
    assert directory is not None
    return list(iter_records(directory))


def assert_chain_valid(rt: Runtime) -> None:
    """The runtime's audit log verifies end to end (call after ``rt.close()``)."""
    assert rt.audit_path is not None
    report = verify_log(rt.audit_path.parent)
    assert report.ok, f"audit chain broken at seq {report.first_bad_seq}: {report.reason}"


def events(rt: Runtime, name: str, **match: Any) -> list[dict[str, Any]]:
    """Records of event ``name`` whose attributes equal ``match``."""
    return [r for r in audit_records(rt) if r.get("event") == name
            and all(r.get(k) == v for k, v in match.items())]


# --- leak checks ----------------------------------------------------------------------------

def _cgroup_text(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return ""


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state first), None when gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def _start_time(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return fields[19] if fields else None


def _alive(pid: int) -> bool:
    """Running or sleeping; a zombie is dead (it holds only a pid until it is reaped)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _container_id(sandbox_id: str) -> str:
    """The full container id for a docker sandbox id (name or short id)."""
    with contextlib.suppress(Exception):
        import docker

        return str(docker.from_env(timeout=5).containers.get(sandbox_id).id)
    return sandbox_id


class Witness:
    """Knows the processes of one sandbox, so a test can prove none outlive the session.

    A process belongs to the sandbox when its cgroup path names the sandbox (``p-...`` for
    the process backend, the container id for docker) or it lives in the sandbox's pid
    namespace. Pids seen during the session are remembered with their start time, so a
    recycled pid is not mistaken for a survivor.
    """

    def __init__(self, session: Session) -> None:
        info = session.sandbox.info
        self.backend = info.backend
        # the double's VMs run in a cgroup named after the E2B sandbox id
        self.marker = info.sandbox_id if info.backend in ("process", "e2b") else _container_id(
            info.sandbox_id)
        self.seen: dict[int, str] = {}
        self.pid_namespaces: set[str] = set()
        self.observe()

    def members(self) -> set[int]:
        found = set()
        for pid in _all_pids():
            if self.marker and self.marker in _cgroup_text(pid):
                found.add(pid)
                continue
            # pid-namespace ids are recycled once a namespace dies, so they identify the
            # sandbox only where no cgroup names it (rlmbox not running as root)
            if self.pid_namespaces and not self.marker:
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/ns/pid") in self.pid_namespaces:
                        found.add(pid)
        return found

    def observe(self) -> set[int]:
        """Records the sandbox's current processes; returns them."""
        members = self.members()
        for pid in members:
            start = _start_time(pid)
            if start is not None:
                self.seen[pid] = start
            with contextlib.suppress(OSError):
                ns = os.readlink(f"/proc/{pid}/ns/pid")
                if ns != os.readlink("/proc/self/ns/pid"):
                    self.pid_namespaces.add(ns)
        return members

    def survivors(self) -> list[int]:
        """Processes of the sandbox still alive (call after the session closed)."""
        deadline = time.monotonic() + 5
        while True:
            alive = {pid for pid in self.members() if _alive(pid)} | {
                pid for pid, start in self.seen.items()
                if _start_time(pid) == start and _alive(pid)}
            if not alive or time.monotonic() > deadline:
                return sorted(alive)
            time.sleep(0.05)   # the kernel reaps a killed tree asynchronously

    def assert_gone(self) -> None:
        assert self.seen, "the witness never saw the sandbox's processes"
        survivors = self.survivors()
        assert not survivors, f"processes of sandbox {self.marker} outlived it: {survivors}"
        if self.backend == "docker":
            # no process is left (above); the engine's removal follows off the closing path
            assert REMOVALS.wait(60), "the engine's removals did not finish in 60 s"
            with contextlib.suppress(ImportError):
                import docker

                client = docker.from_env(timeout=5)
                with pytest.raises(docker.errors.NotFound):
                    client.containers.get(self.marker)


@contextlib.contextmanager
def watched_session(rt: Runtime, **kwargs: Any) -> Iterator[tuple[Session, Witness]]:
    """A session plus its witness; on exit the session is closed and no process of its
    sandbox may be left (escapees included)."""
    session = rt.session(**kwargs)
    witness: Witness | None = None
    try:
        witness = Witness(session)
        yield session, witness
    finally:
        session.close()
    witness.assert_gone()


# --- host targets ---------------------------------------------------------------------------

class Listener:
    """A TCP or UDP socket on a loopback address that records anything that reaches it."""

    def __init__(self, family: socket.AddressFamily, kind: socket.SocketKind, host: str) -> None:
        self.sock = socket.socket(family, kind)
        self.sock.bind((host, 0))
        if kind == socket.SOCK_STREAM:
            self.sock.listen(16)
        self.sock.setblocking(False)
        self.host = host
        self.port: int = self.sock.getsockname()[1]
        self.kind = kind

    def reached(self, wait: float = 0.05) -> bool:
        """True when a connection or a datagram arrived."""
        deadline = time.monotonic() + wait
        while True:
            try:
                if self.kind == socket.SOCK_STREAM:
                    conn, _ = self.sock.accept()
                    conn.close()
                else:
                    self.sock.recvfrom(65536)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.02)
                continue
            return True

    def close(self) -> None:
        self.sock.close()


@dataclass
class HostTargets:
    """Things on the host that sandboxed code must not reach, and the check that it did not."""

    canary_dir: Path
    canary: Path
    canary_text: str
    write_target: Path
    tcp: Listener
    tcp6: Listener | None
    udp: Listener
    victim: subprocess.Popen[bytes]
    secret: str

    def params(self) -> str:
        """A JSON literal of the targets, for pasting into attack code."""
        return json.dumps({
            "canary": str(self.canary), "canary_dir": str(self.canary_dir),
            "canary_text": self.canary_text, "write_target": str(self.write_target),
            "tcp_port": self.tcp.port, "tcp6_port": self.tcp6.port if self.tcp6 else None,
            "udp_port": self.udp.port, "victim": self.victim.pid, "host_pid": os.getpid(),
            "secret": self.secret})

    def assert_unharmed(self) -> None:
        assert self.canary.read_text() == self.canary_text, "the host canary was changed"
        assert not self.write_target.exists(), "sandboxed code wrote a host file"
        assert sorted(p.name for p in self.canary_dir.iterdir()) == [self.canary.name], \
            "sandboxed code created a file in a host directory"
        assert self.victim.poll() is None, "a host process was killed from the sandbox"
        for listener in (self.tcp, self.tcp6, self.udp):
            if listener is not None:
                assert not listener.reached(), \
                    f"sandboxed code reached the host listener {listener.host}:{listener.port}"


def _drop_to_sandbox_uid() -> None:
    os.setgroups([])
    os.setresgid(SANDBOX_UID, SANDBOX_UID, SANDBOX_UID)
    os.setresuid(SANDBOX_UID, SANDBOX_UID, SANDBOX_UID)


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> Iterator[HostTargets]:
    """Host canaries, loopback listeners and a victim process with the sandbox's uid.

    The canary directory is world-readable on purpose: file modes must not be what keeps
    sandboxed code out, the sandbox must. The secret is set in the host's environment
    (as an LM provider key would be).
    """
    token = secrets.token_hex(12)
    canary_dir = Path("/var/tmp") / f"rlmbox-canary-{token}"
    canary_dir.mkdir(mode=0o755)
    os.chmod(canary_dir, 0o755)  # world-readable on purpose (see docstring)
    canary = canary_dir / "canary.txt"
    canary_text = f"canary-{token}\n"
    canary.write_text(canary_text)
    os.chmod(canary, 0o666)  # even a world-writable file must stay untouched
    secret = f"sk-ant-canary-{secrets.token_hex(16)}"
    monkeypatch.setenv("ANTHROPIC_API_KEY", secret)
    monkeypatch.setenv("RLMBOX_TEST_SECRET", secret)
    tcp6 = None
    if socket.has_ipv6:
        with contextlib.suppress(OSError):
            tcp6 = Listener(socket.AF_INET6, socket.SOCK_STREAM, "::1")
    preexec = _drop_to_sandbox_uid if os.geteuid() == 0 else None
    victim = subprocess.Popen(["sleep", "600"], preexec_fn=preexec)  # noqa: PLW1509
    targets = HostTargets(
        canary_dir=canary_dir, canary=canary, canary_text=canary_text,
        write_target=canary_dir / "written-from-sandbox", secret=secret,
        tcp=Listener(socket.AF_INET, socket.SOCK_STREAM, "127.0.0.1"), tcp6=tcp6,
        udp=Listener(socket.AF_INET, socket.SOCK_DGRAM, "127.0.0.1"), victim=victim)
    try:
        yield targets
    finally:
        with contextlib.suppress(ProcessLookupError):
            victim.send_signal(signal.SIGKILL)
        victim.wait()
        for listener in (targets.tcp, targets.tcp6, targets.udp):
            if listener is not None:
                listener.close()
        shutil.rmtree(canary_dir, ignore_errors=True)


def run_json(session: Session, code: str) -> Any:
    """Runs attack code that prints one JSON line last; returns it parsed."""
    result = session.exec(code)
    assert result.status == "ok", f"probe cell failed: {result.status} {result.error}"
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert lines, f"probe printed nothing; stderr: {result.stderr}"
    return json.loads(lines[-1])


AttackCheck = Callable[[Any], None]


@dataclass
class Attempt:
    """What a call run by :func:`attempt_bounded` did: its value or its error, how long it
    took, and whether it was still running at the bound."""

    value: Any = None
    error: BaseException | None = None
    took: float = 0.0
    held: bool = False


def attempt_bounded(fn: Callable[[], Any], bound_s: float) -> Attempt:
    """Runs ``fn`` on a thread of its own and waits up to ``bound_s`` for it: a call an
    attack should end (a file transfer a sandbox stalls) is judged, never waited for."""
    attempt = Attempt()

    def run() -> None:
        try:
            attempt.value = fn()
        except BaseException as exc:   # the caller judges it
            attempt.error = exc

    began = time.monotonic()
    worker = threading.Thread(target=run, name="attempt-bounded", daemon=True)
    worker.start()
    worker.join(bound_s)
    attempt.took = time.monotonic() - began
    attempt.held = worker.is_alive()
    return attempt


def exec_bounded(session: Session, code: str, bound_s: float, **kwargs: Any) -> ExecResult:
    """``session.exec`` that must return within ``bound_s``: a hang is a test failure,
    not a stuck suite (the sandbox is killed to free the blocked host thread)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = session.exec(code, **kwargs)
        except BaseException as exc:
            box["error"] = exc

    worker = threading.Thread(target=run, name="exec-bounded", daemon=True)
    worker.start()
    worker.join(bound_s)
    if worker.is_alive():
        session.sandbox.kill()
        worker.join(10)
        raise AssertionError(f"exec did not return within {bound_s:g} s (the host hung)")
    if "error" in box:
        raise box["error"]
    result: ExecResult = box["result"]
    return result
