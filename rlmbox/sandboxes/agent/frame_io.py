"""The agent's end of the frame protocol: locked writes and blocking reads on private fds.

A cell's interrupt (SIGINT, from the host or the flood stop) raises KeyboardInterrupt in
the main thread between any two bytecodes; raised between two writes of one frame it
tore the frame, and between a read and the decoder's feed it lost bytes: either way the
stream was out of step for good and the session was killed at the cell's wall time. So
while the main thread moves frame bytes it is ``busy``: the agent's handler only marks the
interrupt pending, and it is raised when the frame is whole (sent, or decoded). Waiting for
bytes is not busy: the wait is a ``select``, which takes no byte, so an interrupt there is
raised at once, as before.

A SIGINT that lands before a cell begins is ignored (it may be a late one for the cell
before), so the host writes an ``interrupt`` frame naming the cell before each SIGINT, and
``interrupted_before`` looks for it as the cell begins, if a SIGINT was ignored since the
last cell began (the agent's handler notes it): an interrupt that comes as a cell starts is
not lost, and a cell that no SIGINT preceded costs no look. Elsewhere an interrupt frame
is dropped, as a stray reply is.
"""

from __future__ import annotations

import collections
import os
import select
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
        self._main = threading.get_ident()   # made on the main thread, which cells run on
        self.busy = False          # the main thread is moving frame bytes: defer interrupts
        self.interrupted = False   # an interrupt came while busy: raised when it ends
        self._held: collections.deque[dict[str, Any]] = collections.deque()  # read early

    def send(self, frame: dict[str, Any]) -> None:
        self.send_encoded(protocol.encode(frame))

    def send_encoded(self, data: bytes) -> None:
        """Writes a frame :func:`protocol.encode` made (the caller already had to encode
        it to know it fits: encoding it twice cost ~10 µs a cell)."""
        with self._lock:
            if threading.get_ident() != self._main:   # the pump: never interrupted
                self._write(data)
                return
            self.busy = True
            try:
                self._write(data)
            finally:
                self._settle()

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._write_fd, view):]

    def _settle(self) -> None:
        """Ends a busy stretch: the frame is whole, so a deferred interrupt is raised now."""
        self.busy = False
        if self.interrupted:
            self.interrupted = False
            raise KeyboardInterrupt

    def recv(self) -> dict[str, Any]:
        """The next frame from the host. Only the main thread defers interrupts: a cell's
        own thread reading a reply must not hold back the interrupt of the main one (nor
        have it raised in itself)."""
        if self._held:
            return self._held.popleft()
        if threading.get_ident() != self._main:
            while (plain := self._decoder.next_frame()) is None:
                self._read_some()
            return plain
        while True:
            self.busy = True
            try:
                frame: dict[str, Any] | None = self._decoder.next_frame()
                if frame is not None:
                    return frame
            finally:
                self._settle()
            # an interrupt here, in the wait or before ``busy`` is set again, has taken no
            # byte of the stream; past that point it waits for the bytes to be fed
            select.select((self._read_fd,), (), ())
            self.busy = True
            try:
                self._read_some()
            finally:
                self._settle()

    def interrupted_before(self, cell_id: str) -> bool:
        """Whether the host's interrupt frame for ``cell_id`` is already here, read without
        waiting (main thread, as the cell begins). Other frames read meanwhile are kept for
        ``recv``; interrupt frames of earlier cells are dropped."""
        found = False
        self.busy = True
        try:
            while select.select((self._read_fd,), (), (), 0)[0]:
                self._read_some()
            while (frame := self._decoder.next_frame()) is not None:
                if frame["t"] != "interrupt":
                    self._held.append(frame)
                elif frame["id"] == cell_id:
                    found = True
        finally:
            self._settle()
        return found

    def _read_some(self) -> None:
        """One read into the decoder (a signal that does not raise is retried, PEP 475)."""
        size = os.readv(self._read_fd, [self._chunk])
        if not size:
            os._exit(0)  # the host went away: nothing left to serve
        with memoryview(self._chunk) as view:
            self._decoder.feed(view[:size])
