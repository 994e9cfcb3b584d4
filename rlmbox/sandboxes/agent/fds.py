"""Moving the protocol off fds 0/1 (or onto the host's socket) before model code runs."""

from __future__ import annotations

import os

from rlmbox.sandboxes.agent.frame_io import FrameIO


def take_private_fds(connect: str | None = None) -> tuple[FrameIO, int, int]:
    """Moves the protocol off fds 0/1 and gives model code /dev/null and two pipes.

    With ``connect`` (a Unix socket path the host listens on) the protocol runs over that
    socket instead of fds 0/1, which then carry nothing. Returns the frame I/O and the
    read ends of the stdout and stderr pipes.
    """
    if connect is not None:
        read_fd = write_fd = _connect(connect)
    else:
        read_fd, write_fd = os.dup(0), os.dup(1)   # os.dup makes them non-inheritable
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    read_ends = []
    for target in (1, 2):
        pipe_r, pipe_w = os.pipe()   # both ends non-inheritable; dup2 makes target inheritable
        os.dup2(pipe_w, target)
        os.close(pipe_w)
        read_ends.append(pipe_r)
    return FrameIO(read_fd, write_fd), read_ends[0], read_ends[1]


def _connect(path: str) -> int:
    """A connected stream socket to the host's per-sandbox listener (non-inheritable).

    Done before any confinement: the host created the listener before this container
    started, so one attempt suffices, and an open connection needs no Landlock right.
    """
    import socket  # noqa: PLC0415 - only the socket transport needs it

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as exc:
        os.write(2, f"rlmbox agent: cannot connect to {path}: {exc}\n".encode())
        os._exit(4)
    return sock.detach()


def connect_path(argv: list[str]) -> str | None:
    """``--connect=<path>`` from the backend: speak on that Unix socket, not on fds 0/1."""
    for arg in argv:
        if arg.startswith("--connect="):
            return arg.removeprefix("--connect=")
    return None
