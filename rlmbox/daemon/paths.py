"""Where the daemon keeps its socket and state, created private, and what it may bind.

The socket's directory is 0700 and the socket 0600 so only the daemon's own uid (and
root) can connect; a TCP listener is loopback-only unless the operator says otherwise.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import stat
from pathlib import Path

from rlmbox.errors import DaemonError


def default_socket() -> Path:
    """``/run/rlmbox/rlmbox.sock`` as root, else ``$XDG_RUNTIME_DIR/rlmbox.sock``."""
    if os.geteuid() == 0:
        return Path("/run/rlmbox/rlmbox.sock")
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    if runtime_dir:
        return Path(runtime_dir) / "rlmbox.sock"
    return default_state_dir() / "rlmbox.sock"


def default_state_dir() -> Path:
    """``/var/lib/rlmbox`` as root, else ``$XDG_STATE_HOME/rlmbox`` (``~/.local/state``)."""
    if os.geteuid() == 0:
        return Path("/var/lib/rlmbox")
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "rlmbox"


def private_dir(path: Path, role: str = "the state directory") -> Path:
    """Creates ``path`` 0700 (parents as needed); refuses one another uid owns or others
    may write, since whoever can write it can swap the socket or the database."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_uid != os.geteuid():
        raise DaemonError(f"{path} is owned by uid {info.st_uid}, not by this daemon's uid",
                          type="Config")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise DaemonError(f"{role} {path} is writable by group or others, who could swap "
                          "the daemon's files: use a directory only you can write (the "
                          f"default is {default_state_dir()})", type="Config")
    os.chmod(path, 0o700)
    return path


def bind_unix(path: Path) -> socket.socket:
    """A listening Unix socket at ``path``, mode 0600, in a 0700 directory.

    A stale socket file (nobody answers) is replaced; a live one means another daemon.
    """
    private_dir(path.parent, "the socket's directory")
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise DaemonError(f"{path} exists and is not a socket", type="Config")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()   # stale: its daemon is gone
        else:
            raise DaemonError(f"another daemon is listening on {path}", type="Config")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)   # the file is born 0600: no window where others may connect
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(128)
    sock.setblocking(False)
    return sock


def parse_tcp(text: str, *, public: bool) -> tuple[str, int]:
    """``HOST:PORT`` with a literal IP; a non-loopback host needs ``public``."""
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise DaemonError(f"--tcp {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8765",
                          type="Config")
    if host == "localhost":
        host = "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError as exc:
        raise DaemonError(f"--tcp {text!r}: the host must be a literal IP address",
                          type="Config") from exc
    if not address.is_loopback and not public:
        raise DaemonError(
            f"refusing to listen on non-loopback address {host}: bearer tokens would travel "
            "in clear text. Put a TLS-terminating proxy in front and pass --tcp-public "
            "(TLS is the operator's job)", type="Config")
    return host, int(port_text)


def bind_tcp(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock
