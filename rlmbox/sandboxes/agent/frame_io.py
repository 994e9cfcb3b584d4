"""The agent's end of the frame protocol: locked writes and blocking reads on private fds."""

from __future__ import annotations

import os
import threading

from rlmbox.sandboxes import protocol

TYPE_CHECKING = False   # typing costs ~2 ms at every sandbox start: for mypy only
if TYPE_CHECKING:
    from typing import Any

# a reused read buffer is resident in every idle sandbox: 1 MiB of it cost 0.9 MiB of PSS
# per session (bench_memory, 6.1 -> 7.0 MiB); a larger frame takes a few more reads
_READ_CHUNK = 64 * 1024


class FrameIO:
    """The private protocol descriptors: locked frame writes, blocking frame reads."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self._read_fd = read_fd
        self._write_fd = write_fd
        self._decoder = protocol.FrameDecoder(protocol.HOST_FRAMES)
        self._lock = threading.Lock()
        # one buffer for every read: os.read(fd, 1 MiB) mapped, shrank and unmapped a fresh
        # MiB each call, three syscalls a frame (and TLB flushes) besides the read itself
        self._chunk = bytearray(_READ_CHUNK)

    def send(self, frame: dict[str, Any]) -> None:
        self.send_encoded(protocol.encode(frame))

    def send_encoded(self, data: bytes) -> None:
        """Writes a frame :func:`protocol.encode` made (the caller already had to encode
        it to know it fits: encoding it twice cost ~10 µs a cell)."""
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
                size = os.readv(self._read_fd, [self._chunk])
            except InterruptedError:
                continue
            if not size:
                os._exit(0)  # the host went away: nothing left to serve
            with memoryview(self._chunk) as view:
                self._decoder.feed(view[:size])
