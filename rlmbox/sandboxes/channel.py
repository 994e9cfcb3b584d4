"""Host side of the frame stream: writes host frames, reads and validates agent frames.

Works over any pair of file descriptors (a pipe pair for the process backend, the attached
socket of a container). Reads are bounded by a deadline and by the frame cap, so a sandbox
that floods, stalls mid-frame or sends garbage cannot grow host memory or hang the host.
"""

from __future__ import annotations

import errno
import os
import selectors
import threading
import time

from rlmbox.errors import FrameTooLarge, ProtocolError, SandboxCrashed
from rlmbox.sandboxes import protocol
from rlmbox.sandboxes.protocol import Frame

# Under glibc's mmap threshold: os.read allocates its whole buffer before it shrinks it to
# what arrived, and a 256 KiB one cost ~15 us of mmap/mremap/munmap per frame on this VM
# against ~1 us (a trivial cell is two frames); a big frame takes a few more reads.
_READ_CHUNK = 64 * 1024


class FrameChannel:
    """Frames over a read fd and a write fd (may be the same socket fd).

    Subclasses change how bytes arrive (``_ingest``: the Docker attach stream demultiplexes
    them first) and what their errors say; the deadlines and the caps stay here, once.
    """

    ended = "the sandbox's stream ended"
    closed = "the sandbox closed its end of the stream"
    stalled = "the sandbox stopped reading its input"
    shut = "the host closed the stream (the sandbox was killed)"

    def __init__(self, read_fd: int, write_fd: int,
                 max_frame: int = protocol.DEFAULT_MAX_FRAME) -> None:
        self._read_fd = read_fd
        self._write_fd = write_fd
        self._max_frame = max_frame
        self._decoder = protocol.FrameDecoder(protocol.AGENT_FRAMES, max_frame)
        self._selector = selectors.DefaultSelector()
        self._selector.register(read_fd, selectors.EVENT_READ)
        # close() from another thread wakes a waiting recv through this pipe: closing the
        # read fd alone drops it from the selector and the waiter would sleep on
        self._wake_r, self._wake_w = os.pipe()
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._select_lock = threading.Lock()
        self._close_lock = threading.Lock()   # a kill may come from two threads at once
        self._eof = False
        self._broken = False
        self._closed = False
        os.set_blocking(write_fd, False)   # writes are bounded by a deadline, never stuck

    def send(self, frame: Frame, timeout: float | None = None) -> None:
        """Writes one frame; a sandbox that stops reading cannot block the host past
        ``timeout`` seconds (``SandboxCrashed`` then; the caller kills the sandbox)."""
        try:
            data = protocol.encode(frame, self._max_frame)
        except protocol.FrameTooLargeError as exc:
            raise FrameTooLarge(str(exc)) from exc
        except protocol.FrameError as exc:
            raise ProtocolError(str(exc)) from exc
        deadline = None if timeout is None else time.monotonic() + timeout
        view = memoryview(data)
        if self._closed:
            raise SandboxCrashed(self.shut)
        while view:
            try:
                written = os.write(self._write_fd, view)
            except BlockingIOError:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise SandboxCrashed(self.stalled) from None
                self._wait_writable(remaining)
                continue
            except OSError as exc:
                if exc.errno in (errno.EPIPE, errno.EBADF, errno.ECONNRESET):
                    raise SandboxCrashed(self.closed) from exc
                raise
            view = view[written:]

    def _wait_writable(self, timeout: float | None) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self._write_fd, selectors.EVENT_WRITE)
            sel.select(1.0 if timeout is None else min(1.0, timeout))

    def recv(self, timeout: float | None) -> Frame | None:
        """Next frame, or None when ``timeout`` seconds pass first."""
        if self._broken:
            raise ProtocolError("the stream broke earlier and cannot be trusted")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            frame = self._take()
            if frame is not None:
                return frame
            if self._eof:
                torn = self._decoder.pending_bytes
                detail = f" ({torn} bytes of a torn frame)" if torn else ""
                raise SandboxCrashed(f"{self.ended}{detail}")
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            if self._ready(remaining):
                self._read_some()

    def _ready(self, timeout: float | None) -> bool:
        """Waits for input from the sandbox; a close from another thread (a kill) ends
        the wait at once, as a crash."""
        with self._select_lock:
            if self._closed:
                raise SandboxCrashed(self.shut)
            events = self._selector.select(timeout)
        if self._closed:
            raise SandboxCrashed(self.shut)
        return any(key.fd == self._read_fd for key, _ in events)

    def _take(self) -> Frame | None:
        try:
            return self._decoder.next_frame()
        except protocol.FrameTooLargeError as exc:
            self._broken = True
            raise FrameTooLarge(str(exc)) from exc
        except protocol.FrameError as exc:
            self._broken = True
            raise ProtocolError(str(exc)) from exc

    def _read_some(self) -> None:
        try:
            data = os.read(self._read_fd, _READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno in (errno.ECONNRESET, errno.EBADF, errno.EIO):
                self._eof = True
                return
            raise
        if not data:
            self._eof = True
        else:
            self._ingest(data)

    def _ingest(self, data: bytes) -> None:
        """Bytes from the sandbox: here, straight into the frame decoder."""
        self._decoder.feed(data)

    def close(self) -> None:
        """Ends the stream; a recv waiting on another thread raises ``SandboxCrashed``.
        Call it before closing the descriptors the channel reads."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            os.write(self._wake_w, b"x")
            with self._select_lock:   # the waiter, woken, has left the selector
                self._selector.close()
                os.close(self._wake_r)
                os.close(self._wake_w)
