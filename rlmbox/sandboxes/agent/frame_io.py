"""The agent's end of the frame protocol: locked writes and blocking reads on private fds."""

from __future__ import annotations

import os
import threading

from rlmbox.sandboxes import protocol

TYPE_CHECKING = False   # typing costs ~2 ms at every sandbox start: for mypy only
if TYPE_CHECKING:
    from typing import Any


class FrameIO:
    """The private protocol descriptors: locked frame writes, blocking frame reads."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self._read_fd = read_fd
        self._write_fd = write_fd
        self._decoder = protocol.FrameDecoder(protocol.HOST_FRAMES)
        self._lock = threading.Lock()

    def send(self, frame: dict[str, Any]) -> None:
        data = protocol.encode(frame)
        with self._lock:
            view = memoryview(data)
            while view:
                view = view[os.write(self._write_fd, view):]

    def recv(self) -> dict[str, Any]:
        while True:
            frame: dict[str, Any] | None = self._decoder.next_frame()
            if frame is not None:
                return frame
            try:
                data = os.read(self._read_fd, 1 << 20)
            except InterruptedError:
                continue
            if not data:
                os._exit(0)  # the host went away: nothing left to serve
            self._decoder.feed(data)
