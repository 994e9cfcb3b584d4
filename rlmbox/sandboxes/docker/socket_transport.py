"""The socket transport: frames over a per-sandbox Unix socket instead of attached stdio.

Locally, with runc, a stream socket skips the engine's attach path (dockerd and the shim
copying every byte through pipes), which makes a frame round trip several times faster
(numbers in docs/backends-docker.md). gVisor cannot reach host sockets and a remote engine
cannot bind-mount host paths, so those keep stdio.

The host makes a private directory (0700, owned by the sandbox uid so the container can
enter it; every other host user cannot) holding one listening socket, before the container
starts; the directory is bind-mounted read-only at /rlmbox/sock. The host accepts one
connection whose peer is the sandbox uid inside this very container (its cgroup names the
container), then closes the listener and unlinks the socket: nothing in the directory is
reachable afterwards, by this sandbox or any other.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import stat
import struct
import tempfile
from pathlib import Path
from typing import Any, Final

from rlmbox.errors import SandboxUnavailable
from rlmbox.sandboxes.channel import FrameChannel
from rlmbox.sandboxes.docker.config import SANDBOX_UID, SOCKET_NAME
from rlmbox.sandboxes.docker.engine import is_local
from rlmbox.sandboxes.protocol import Frame

_PEERCRED: Final = struct.Struct("3i")   # struct ucred: pid, uid, gid


def default_socket_root() -> Path:
    """Where per-sandbox socket directories live: root-only /run when root."""
    if os.geteuid() == 0:
        return Path("/run/rlmbox/sock")
    return Path(tempfile.gettempdir()) / f"rlmbox-sock-{os.getuid()}"


def socket_problem(runtime: str, client: Any) -> str | None:
    """Why the socket transport cannot run here, or None when it can."""
    if runtime == "runsc":
        return "gVisor (runsc) cannot connect to host Unix sockets"
    if not is_local(client):
        return "the engine is remote, so a host directory cannot be bind-mounted"
    if os.geteuid() != 0:
        return ("the host is not root, so it cannot give the socket's directory to the "
                f"sandbox uid {SANDBOX_UID}")
    options = " ".join(str(o) for o in (client.info().get("SecurityOptions") or []))
    if "name=userns" in options or "name=rootless" in options:
        return "the engine remaps uids, so the sandbox uid on the host is unknown"
    return None


def choose_transport(requested: str, runtime: str, client: Any) -> str:
    """``stdio`` or ``socket`` for ``requested`` (``auto`` picks socket where it runs)."""
    if requested == "stdio":
        return "stdio"
    problem = socket_problem(runtime, client)
    if problem is None:
        return "socket"
    if requested == "socket":
        raise SandboxUnavailable(f"the socket transport cannot run here: {problem}; "
                                 "use transport='stdio' (or 'auto')")
    return "stdio"


def _private_root(root: Path) -> None:
    """Creates ``root`` or accepts it only when it is ours and closed to everyone else."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.lstat(root)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() \
            or info.st_mode & 0o077:
        raise SandboxUnavailable(f"{root} must be a directory owned by uid {os.geteuid()} "
                                 "with mode 0700 (someone else made it?)")


class SocketListener:
    """One sandbox's private directory and the socket listening in it."""

    def __init__(self, host_dir: Path, listener: socket.socket) -> None:
        self.host_dir = host_dir
        self._listener: socket.socket | None = listener

    @classmethod
    def create(cls, root: Path, name: str) -> SocketListener:
        _private_root(root)
        host_dir = root / name
        host_dir.mkdir(mode=0o700)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dir_fd = os.open(host_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            # Bound through the directory's fd: a short path, whatever the root's length.
            listener.bind(f"/proc/self/fd/{dir_fd}/{SOCKET_NAME}")
            listener.listen(1)
            os.chmod(SOCKET_NAME, 0o600, dir_fd=dir_fd)
            os.chown(SOCKET_NAME, SANDBOX_UID, SANDBOX_UID, dir_fd=dir_fd,
                     follow_symlinks=False)
            os.chown(host_dir, SANDBOX_UID, SANDBOX_UID)
        except BaseException:
            listener.close()
            shutil.rmtree(host_dir, ignore_errors=True)
            raise
        finally:
            os.close(dir_fd)
        listener.setblocking(False)
        return cls(host_dir, listener)

    def _listening(self) -> socket.socket:
        """The listener; refuses use after the first good peer closed it."""
        if self._listener is None:
            raise SandboxUnavailable("the agent's socket listener is already closed")
        return self._listener

    def fileno(self) -> int:
        return self._listening().fileno()

    def accept_from(self, container_id: str) -> SocketFrames | None:
        """The connection waiting on the listener if its peer is the sandbox uid in
        ``container_id``; None (connection dropped) otherwise. The first good peer ends
        the listening: the listener closes and the socket file is unlinked."""
        try:
            conn, _ = self._listening().accept()
        except BlockingIOError:
            return None
        if not _is_sandbox_peer(conn, container_id):
            conn.close()
            return None
        self._stop_listening()
        conn.setblocking(False)
        return SocketFrames(conn)

    def _stop_listening(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with contextlib.suppress(FileNotFoundError):
            (self.host_dir / SOCKET_NAME).unlink()

    def discard(self) -> None:
        """Closes the listener and removes the directory with everything in it."""
        self._stop_listening()
        shutil.rmtree(self.host_dir, ignore_errors=True)


def _is_sandbox_peer(conn: socket.socket, container_id: str) -> bool:
    """The peer runs as the sandbox uid inside this container (its cgroup says so)."""
    pid, uid, _ = _PEERCRED.unpack(
        conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    if uid != SANDBOX_UID or pid <= 0:
        return False
    try:
        cgroups = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return False
    return container_id in cgroups


class SocketFrames:
    """Frames over the accepted connection (``FrameChannel``), owning the socket."""

    def __init__(self, conn: socket.socket) -> None:
        self._conn = conn
        self._channel = FrameChannel(conn.fileno(), conn.fileno())

    def send(self, frame: Frame, timeout: float | None = None) -> None:
        self._channel.send(frame, timeout)

    def recv(self, timeout: float | None) -> Frame | None:
        return self._channel.recv(timeout)

    def close(self) -> None:
        self._channel.close()
        self._conn.close()


__all__ = ["SocketFrames", "SocketListener", "choose_transport", "default_socket_root",
           "socket_problem"]
