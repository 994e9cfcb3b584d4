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
not lost, and a cell that no SIGINT preceded costs no look.

Any of the agent's threads may read the stream (the serve loop, and each thread waiting
for its host call's reply), one at a time, and each frame goes to the thread it is for:
replies to the thread awaiting that call, interrupt frames to ``interrupted_before``, the
rest to the serve loop. A thread that dropped what was not its reply took frames from
others: one an earlier cell left calling host functions read the next cell's exec frame,
and that cell never began. A reply nobody awaits any more (its call gave up) is dropped.
"""

from __future__ import annotations

import collections
import os
import select
import threading
import time

from rlmbox.sandboxes import protocol

TYPE_CHECKING = False   # typing costs ~2 ms at every sandbox start: for mypy only
if TYPE_CHECKING:
    from collections.abc import Callable
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
        # what a reading thread routed, under _mail; _reading: a thread reads the stream
        self._mail = threading.Condition(threading.Lock())
        self._reading = False
        self._held: collections.deque[dict[str, Any]] = collections.deque()  # serve loop's
        self._awaited: set[int] = set()
        self._replies: dict[int, dict[str, Any]] = {}
        self._interrupts: set[str] = set()
        self._shutdown: dict[str, Any] | None = None

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
        """The serve loop's next frame: anything but a reply or an interrupt frame."""
        return self._take(self._next_held)

    def expect(self, call_id: int) -> None:
        """Before a call frame is sent: its reply is kept for :meth:`recv_reply`, whichever
        thread reads it (one read before the reply was awaited would be dropped)."""
        with self._mail:
            self._awaited.add(call_id)

    def forget(self, call_id: int) -> None:
        with self._mail:
            self._awaited.discard(call_id)
            self._replies.pop(call_id, None)

    def recv_reply(self, call_id: int) -> dict[str, Any]:
        """The reply to an expected call (or the host's shutdown frame)."""
        try:
            return self._take(lambda: self._replies.pop(call_id, None) or self._shutdown)
        finally:
            self.forget(call_id)

    def _next_held(self) -> dict[str, Any] | None:
        return self._held.popleft() if self._held else None

    def _take(self, ready: Callable[[], dict[str, Any] | None]) -> dict[str, Any]:
        """Waits for ``ready`` to give a frame, reading the stream for every thread while
        no other thread does. An interrupt of the main thread in the wait takes no byte,
        and whenever it comes the reader role is let go (``held`` is set with the role, in
        one statement: no interrupt can come between them)."""
        while True:
            held = False
            try:
                with self._mail:
                    while (frame := ready()) is None and self._reading:
                        self._mail.wait()
                    if frame is not None:
                        return frame
                    self._reading = held = True
                self._read_and_route()
            finally:
                if held:
                    self._let_go()

    def _let_go(self) -> None:
        with self._mail:
            self._reading = False
            self._mail.notify_all()

    def _read_and_route(self) -> None:
        """One read of the stream (this thread holds the reader role), its whole frames
        routed. The main thread is busy from the read until they are routed, so a deferred
        interrupt is raised only once no byte of them can be lost."""
        if threading.get_ident() != self._main:
            self._read_some()
            self._route_decoded()
            return
        select.select((self._read_fd,), (), ())   # an interrupt here has taken no byte
        self.busy = True
        try:
            self._read_some()
            self._route_decoded()
        finally:
            self._settle()

    def _route_decoded(self) -> None:
        with self._mail:
            while (frame := self._decoder.next_frame()) is not None:
                kind = frame["t"]
                if kind == "reply":
                    if frame["call"] in self._awaited:   # else its call gave up: dropped
                        self._replies[frame["call"]] = frame
                elif kind == "interrupt":
                    if len(self._interrupts) >= 16:   # cells that began without a look
                        self._interrupts.clear()
                    self._interrupts.add(frame["id"])
                else:
                    if kind == "shutdown":
                        self._shutdown = frame
                    self._held.append(frame)

    def interrupted_before(self, cell_id: str) -> bool:
        """Whether the host's interrupt frame for ``cell_id`` is already here, read without
        waiting for more bytes (main thread, as the cell begins); the frame, written before
        the SIGINT this follows, is in the stream or read. A thread an earlier cell left
        may be reading it: routed, it is here in a moment (50 ms at most)."""
        give_up = time.monotonic() + 0.05
        held = False
        try:
            with self._mail:
                while (self._reading and cell_id not in self._interrupts
                       and (left := give_up - time.monotonic()) > 0):
                    self._mail.wait(left)
                if not self._reading and cell_id not in self._interrupts:
                    self._reading = held = True
            if held:
                self.busy = True
                try:
                    while select.select((self._read_fd,), (), (), 0)[0]:
                        self._read_some()
                        self._route_decoded()
                finally:
                    self._settle()
        finally:
            if held:
                self._let_go()
        with self._mail:
            found = cell_id in self._interrupts
            self._interrupts.clear()
        return found

    def _read_some(self) -> None:
        """One read into the decoder (a signal that does not raise is retried, PEP 475)."""
        size = os.readv(self._read_fd, [self._chunk])
        if not size:
            os._exit(0)  # the host went away: nothing left to serve
        with memoryview(self._chunk) as view:
            self._decoder.feed(view[:size])
