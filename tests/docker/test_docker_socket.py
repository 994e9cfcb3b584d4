"""The socket transport: the real agent on a per-sandbox Unix socket (runc, local engine).

Cells, host calls, interrupts, kills and OOM reports work over the socket as over stdio;
runsc always speaks stdio; the socket's directory shows nothing of the host, nothing of
another sandbox, and is gone with its sandbox.
"""

from __future__ import annotations

import errno
import itertools
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rlmbox.errors import SandboxCrashed, SandboxUnavailable
from rlmbox.sandboxes.base import ResourceLimits, SandboxSpec
from rlmbox.sandboxes.docker.backend import DockerBackend, DockerSandbox
from rlmbox.sandboxes.docker.config import SANDBOX_UID, SOCKET_MOUNT, SOCKET_NAME
from rlmbox.sandboxes.docker.engine import runtimes
from rlmbox.sandboxes.docker.host_kill import REMOVALS
from rlmbox.sandboxes.docker.socket_transport import SocketListener

pytestmark = pytest.mark.docker

_ids = itertools.count()
Reply = Callable[[dict[str, Any]], Any]


@pytest.fixture
def runc(engine: Any) -> str:
    if "runc" not in runtimes(engine):
        pytest.fail("the engine has no runc runtime")
    return "runc"


def real_backend(engine: Any, image: str, tmp_path: Path, runtime: str = "runc",
                 transport: str = "auto") -> DockerBackend:
    return DockerBackend(runtime, image=image, client=engine, transport=transport,
                         stage_root=tmp_path / "stage", socket_root=tmp_path / "sock")


@pytest.fixture
def socket_backend(runc: str, engine: Any, image: str, tmp_path: Path) -> DockerBackend:
    return real_backend(engine, image, tmp_path, runc)


@pytest.fixture
def sandboxes(socket_backend: DockerBackend) -> Iterator[Callable[..., DockerSandbox]]:
    made: list[DockerSandbox] = []

    def make(**limits: Any) -> DockerSandbox:
        sandbox = socket_backend.create(SandboxSpec(limits=ResourceLimits(**limits)))
        made.append(sandbox)
        init(sandbox)
        return sandbox

    yield make
    for sandbox in made:
        sandbox.kill()


def init(sandbox: DockerSandbox) -> dict[str, Any]:
    """Sends init as a session does: one host function, Landlock and seccomp on."""
    sandbox.send({"t": "init", "id": "init", "config": {
        "functions": ["llm_query"], "landlock": True, "seccomp": True,
        "writable": sandbox.writable_paths()}})
    frame = sandbox.recv(60)
    assert frame is not None
    assert frame["status"] == "ok", frame
    answer: dict[str, Any] = frame["answer"]
    return answer


def cell(sandbox: DockerSandbox, code: str, reply: Reply | None = None) -> dict[str, Any]:
    """Runs one cell in the real agent, answering its host calls with ``reply``."""
    cell_id = f"s{next(_ids)}"
    sandbox.send({"t": "exec", "id": cell_id, "code": code})
    out: list[str] = []
    while True:
        frame = sandbox.recv(120)
        assert frame is not None, "no frame within 120 s"
        if frame["t"] == "output":
            out.append(frame["data"])
        elif frame["t"] == "call":
            assert reply is not None, frame
            sandbox.send({"t": "reply", "call": frame["call"], "ok": True,
                          "value": reply(frame)}, timeout=10)
        elif frame["t"] == "result" and frame["id"] == cell_id:
            frame["stdout"] = "".join(out)
            return frame


def value(sandbox: DockerSandbox, code: str) -> Any:
    """The cell's ``answer`` variable, returned through the agent's FINAL."""
    frame = cell(sandbox, code + "\nFINAL(answer)")
    assert frame["status"] == "ok", frame.get("error")
    return frame.get("answer")


# --- choosing the transport ------------------------------------------------------------

def test_auto_picks_the_socket_on_runc(socket_backend: DockerBackend,
                                       sandboxes: Callable[..., DockerSandbox]) -> None:
    assert socket_backend.transport == "socket"
    assert sandboxes().info.transport == "socket"


@pytest.mark.gvisor
@pytest.mark.parametrize("transport", ["auto", "stdio"])
def test_runsc_always_speaks_stdio(engine: Any, image: str, tmp_path: Path,
                                   transport: str) -> None:
    if "runsc" not in runtimes(engine):
        pytest.fail("the engine has no runsc runtime")
    backend = real_backend(engine, image, tmp_path, "runsc", transport)
    sandbox = backend.create(SandboxSpec())
    try:
        assert sandbox.info.transport == "stdio"
        init(sandbox)
        assert value(sandbox, "import os; answer = os.path.exists('/rlmbox/sock')") is False
    finally:
        sandbox.kill()


def test_socket_forced_on_runsc_is_refused(engine: Any, image: str, tmp_path: Path) -> None:
    backend = real_backend(engine, image, tmp_path, "runsc", "socket")
    with pytest.raises(SandboxUnavailable, match="gVisor"):
        backend.create(SandboxSpec())


def test_unknown_transport_is_refused() -> None:
    with pytest.raises(ValueError, match="transport"):
        DockerBackend("runc", transport="tcp")


def test_stdio_still_works_when_forced(runc: str, engine: Any, image: str,
                                       tmp_path: Path) -> None:
    sandbox = real_backend(engine, image, tmp_path, runc, "stdio").create(SandboxSpec())
    try:
        assert sandbox.info.transport == "stdio"
        init(sandbox)
        value(sandbox, "x = answer = 20")
        frame = cell(sandbox, "FINAL(x + int(llm_query('22')))", reply=lambda f: f["args"][0])
        assert frame["answer"] == 42
        assert value(sandbox, "import os; answer = os.path.exists('/rlmbox/sock')") is False
    finally:
        sandbox.kill()


# --- the real agent over the socket -----------------------------------------------------

def test_cells_keep_state_and_output_over_the_socket(
        sandboxes: Callable[..., DockerSandbox]) -> None:
    sandbox = sandboxes()
    value(sandbox, "x = answer = 41")
    frame = cell(sandbox, "print('hello'); import os; os.write(2, b'e'); FINAL(x + 1)")
    assert frame["answer"] == 42
    assert "hello\n" in frame["stdout"]
    big = value(sandbox, "answer = 'ab' * (2 * 1024 * 1024)")
    assert big == "ab" * (2 * 1024 * 1024)


def test_host_calls_round_trip_over_the_socket(
        sandboxes: Callable[..., DockerSandbox]) -> None:
    sandbox = sandboxes()
    seen: list[dict[str, Any]] = []

    def reply(frame: dict[str, Any]) -> str:
        seen.append(frame)
        return str(frame["args"][0]).upper()

    frame = cell(sandbox, "FINAL([llm_query(w) for w in ('a', 'b')])", reply)
    assert frame["answer"] == ["A", "B"]
    assert [f["fn"] for f in seen] == ["llm_query", "llm_query"]


def test_interrupt_over_the_socket_keeps_state(
        sandboxes: Callable[..., DockerSandbox]) -> None:
    sandbox = sandboxes()
    value(sandbox, "kept = answer = 'yes'")
    sandbox.send({"t": "exec", "id": "spin", "code": "while True: pass"})
    timer = threading.Timer(1.0, sandbox.interrupt)
    timer.start()
    frame = sandbox.recv(60)
    timer.join()
    assert frame is not None
    assert frame["status"] == "interrupted"
    assert value(sandbox, "answer = kept") == "yes"


def test_kill_ends_the_socket_and_removes_its_directory(
        socket_backend: DockerBackend, sandboxes: Callable[..., DockerSandbox],
        engine: Any, tmp_path: Path) -> None:
    sandbox = sandboxes()
    host_dir = tmp_path / "sock" / sandbox.info.sandbox_id
    assert host_dir.is_dir()
    sandbox.kill()
    sandbox.kill()
    assert not host_dir.exists()
    assert list((tmp_path / "sock").iterdir()) == []
    assert REMOVALS.wait(60)   # the engine's removal runs off the caller's path
    assert engine.api.containers(all=True, filters={"id": sandbox.container_id}) == []
    with pytest.raises(SandboxCrashed):
        sandbox.send({"t": "exec", "id": "late", "code": "pass"}, timeout=5)


def test_agent_exit_is_reported_over_the_socket(
        sandboxes: Callable[..., DockerSandbox]) -> None:
    sandbox = sandboxes()
    sandbox.send({"t": "exec", "id": "bye", "code": "import os; os._exit(7)"})
    with pytest.raises(SandboxCrashed, match="exit 7"):
        sandbox.recv(60)


@pytest.mark.slow
def test_oom_is_reported_over_the_socket(sandboxes: Callable[..., DockerSandbox]) -> None:
    sandbox = sandboxes(memory_bytes=128 * 1024 * 1024)
    sandbox.send({"t": "exec", "id": "oom",
                  "code": "x = []\nwhile True: x.append(bytearray(8 << 20))"})
    with pytest.raises(SandboxCrashed, match="out of memory"):
        sandbox.recv(120)
    assert sandbox.death_reason() == "out of memory"


def test_an_agent_that_dies_before_connecting_fails_fast(
        runc: str, engine: Any, image: str, tmp_path: Path) -> None:
    """No 60 s wait: the attach stream's end says the agent is gone; nothing is left."""
    bundle = tmp_path / "bundle"
    bundle.mkdir(mode=0o755)
    (bundle / "agent.py").write_text("import sys\nsys.stderr.write('boom\\n')\nsys.exit(3)\n")
    os.chmod(bundle / "agent.py", 0o644)
    backend = DockerBackend(runc, image=image, client=engine, agent_dir=bundle,
                            stage_root=tmp_path / "stage", socket_root=tmp_path / "sock",
                            ready_timeout=30)
    with pytest.raises(SandboxCrashed, match=r"before it connected.*exit 3.*boom"):
        backend.create(SandboxSpec())
    assert list((tmp_path / "sock").iterdir()) == []


def test_an_agent_speaking_stdio_is_refused(runc: str, engine: Any, image: str,
                                            agent_dir: Path, tmp_path: Path) -> None:
    """The stdio stand-in under the socket transport is a crash, not a hang."""
    backend = DockerBackend(runc, image=image, client=engine, agent_dir=agent_dir,
                            stage_root=tmp_path / "stage", socket_root=tmp_path / "sock",
                            transport="socket", ready_timeout=30)
    with pytest.raises(SandboxCrashed, match=r"spoke on stdio|ended before it connected"):
        backend.create(SandboxSpec())
    assert list((tmp_path / "sock").iterdir()) == []


# --- what the socket directory exposes --------------------------------------------------

FIND_SOCKETS = """
import os, stat
found = []
for top in ('/',):
    for root, dirs, files in os.walk(top):
        if root in ('/proc', '/sys'):
            dirs[:] = []
            continue
        for name in dirs + files:
            path = os.path.join(root, name)
            try:
                if stat.S_ISSOCK(os.lstat(path).st_mode):
                    found.append(path)
            except OSError:
                pass
answer = {'sockets': found, 'sock_dir': os.listdir('/rlmbox/sock')}
"""


def test_the_socket_directory_is_empty_once_the_agent_is_connected(
        sandboxes: Callable[..., DockerSandbox]) -> None:
    """No socket file anywhere inside: the host unlinks its own after accepting."""
    facts = value(sandboxes(), FIND_SOCKETS)
    assert facts == {"sockets": [], "sock_dir": []}


def test_the_socket_directory_is_read_only_and_reconnecting_fails(
        sandboxes: Callable[..., DockerSandbox]) -> None:
    sandbox = sandboxes()
    facts = value(sandbox, f"""
import os, socket
out = {{}}
try:
    open('{SOCKET_MOUNT}/x', 'w')
except OSError as e:
    out['write'] = e.errno
s = socket.socket(socket.AF_UNIX)
try:
    s.connect('{SOCKET_MOUNT}/{SOCKET_NAME}')
    out['connect'] = 0
except OSError as e:
    out['connect'] = e.errno
answer = out
""")
    assert facts["write"] in (errno.EROFS, errno.EACCES)
    assert facts["connect"] == errno.ENOENT


def test_another_sandboxs_socket_is_unreachable(
        socket_backend: DockerBackend, sandboxes: Callable[..., DockerSandbox]) -> None:
    """B listens (prepared, not started) while A looks for it: A sees no socket at all and
    B's host path does not exist inside A."""
    other = socket_backend.prepare(SandboxSpec())
    try:
        assert other.listener is not None
        other_path = other.listener.host_dir / SOCKET_NAME
        assert other_path.exists()
        sandbox = sandboxes()
        facts = value(sandbox, FIND_SOCKETS + f"""
import socket
s = socket.socket(socket.AF_UNIX)
try:
    s.connect({str(other_path)!r})
    answer['other'] = 0
except OSError as e:
    answer['other'] = e.errno
""")
        assert facts["sockets"] == []
        assert facts["other"] == errno.ENOENT
    finally:
        socket_backend.start(other).kill()


def test_host_side_directory_is_private_to_the_sandbox_uid(tmp_path: Path) -> None:
    """0700 dir and 0600 socket, both owned by the sandbox uid: other host users cannot
    connect; a host process of the sandbox uid can, but is not in the container's cgroup
    and is dropped; the listener keeps listening for the real agent."""
    listener = SocketListener.create(tmp_path / "sock", "rlmbox-test")
    try:
        info = os.stat(listener.host_dir)
        assert (info.st_uid, info.st_mode & 0o777) == (SANDBOX_UID, 0o700)
        sock_info = os.stat(listener.host_dir / SOCKET_NAME)
        assert (sock_info.st_uid, sock_info.st_mode & 0o777) == (SANDBOX_UID, 0o600)
        assert _connect_as(listener.host_dir, 65534) == errno.EACCES
        assert _connect_as(listener.host_dir, SANDBOX_UID) == 0
        assert listener.accept_from("0" * 64) is None   # not the container: dropped
        assert (listener.host_dir / SOCKET_NAME).exists()  # still listening
    finally:
        listener.discard()
    assert not listener.host_dir.exists()


def test_socket_root_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "sock"
    root.mkdir(mode=0o777)
    os.chmod(root, 0o777)   # the attack: a root anyone can write
    with pytest.raises(SandboxUnavailable, match="mode 0700"):
        SocketListener.create(root, "rlmbox-test")


def _connect_as(host_dir: Path, uid: int) -> int:
    """Connects to the socket from a child process running as ``uid``; returns the errno
    (0: connected). The child reaches the directory through an inherited fd, so only the
    directory's and the socket's own permissions decide."""
    dir_fd = os.open(host_dir, os.O_PATH | os.O_DIRECTORY)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 0
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            client = socket.socket(socket.AF_UNIX)
            client.connect(f"/proc/self/fd/{dir_fd}/{SOCKET_NAME}")
        except OSError as exc:
            code = exc.errno or 255
        os.write(write_end, bytes([code]))
        os._exit(0)
    os.close(write_end)
    try:
        result = os.read(read_end, 1)
    finally:
        os.close(read_end)
        os.close(dir_fd)
        os.waitpid(pid, 0)
    return result[0]


def test_landlock_does_not_govern_path_socket_connects_here(
        sandboxes: Callable[..., DockerSandbox], socket_backend: DockerBackend,
        tmp_path: Path) -> None:
    """Why the host unlinks its socket: under Landlock ABI <= 7 a confined process may
    still connect to a path socket in a directory it cannot write. A socket the host binds
    in the sandbox's directory after start is reachable by confined model code."""
    sandbox = sandboxes()
    host_dir = tmp_path / "sock" / sandbox.info.sandbox_id
    extra = socket.socket(socket.AF_UNIX)
    dir_fd = os.open(host_dir, os.O_PATH | os.O_DIRECTORY)
    try:
        extra.bind(f"/proc/self/fd/{dir_fd}/extra.sock")
        extra.listen(1)
        os.chown("extra.sock", SANDBOX_UID, SANDBOX_UID, dir_fd=dir_fd)
        facts = value(sandbox, f"""
import socket
s = socket.socket(socket.AF_UNIX)
try:
    s.connect('{SOCKET_MOUNT}/extra.sock')
    answer = 0
except OSError as e:
    answer = e.errno
""")
    finally:
        extra.close()
        os.close(dir_fd)
    abi = int(value(sandbox, "from rlmbox.sandboxes.process import confine\n"
                             "answer = confine.landlock_abi()"))
    if abi <= 7:
        assert facts == 0, "Landlock <= 7 was expected to allow path-socket connects"
    else:
        assert facts in (0, errno.EACCES)


OWNER_SCRIPT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from rlmbox.sandboxes.base import SandboxSpec
    from rlmbox.sandboxes.docker.backend import DockerBackend
    backend = DockerBackend("runc", image=sys.argv[1], stage_root=Path(sys.argv[2]),
                            socket_root=Path(sys.argv[3]))
    sandbox = backend.create(SandboxSpec())
    print(sandbox.info.transport, sandbox.container_id, flush=True)
    time.sleep(600)
""")


def test_gc_removes_the_socket_directory_of_a_killed_owner(
        runc: str, engine: Any, image: str, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER_SCRIPT, image, str(tmp_path / "stage"),
         str(tmp_path / "sock")], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert owner.stdout is not None
        line = owner.stdout.readline().split()
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()
    assert line[0] == "socket", line
    assert len(list((tmp_path / "sock").iterdir())) == 1
    real_backend(engine, image, tmp_path, runc).collect_garbage()
    assert engine.api.containers(all=True, filters={"id": line[1]}) == []
    assert list((tmp_path / "sock").iterdir()) == [], "the orphan's socket dir was left"


def test_an_agent_that_never_connects_times_out_and_is_removed(
        runc: str, engine: Any, image: str, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir(mode=0o755)
    (bundle / "agent.py").write_text("import time\ntime.sleep(600)\n")
    os.chmod(bundle / "agent.py", 0o644)
    backend = DockerBackend(runc, image=image, client=engine, agent_dir=bundle,
                            stage_root=tmp_path / "stage", socket_root=tmp_path / "sock",
                            ready_timeout=3)
    with pytest.raises(SandboxUnavailable, match="not ready within 3 s"):
        backend.create(SandboxSpec())
    assert list((tmp_path / "sock").iterdir()) == []
