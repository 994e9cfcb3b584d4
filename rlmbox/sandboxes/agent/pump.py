"""The output pump: fds 1 and 2 of model code streamed to the host, capped per cell."""

from __future__ import annotations

import codecs
import os
import select
import threading
from collections.abc import Callable

from rlmbox.sandboxes import protocol
from rlmbox.sandboxes.agent.frame_io import FrameIO

_OUTPUT_CHUNK = 64 * 1024
_DRAIN_LIMIT = 4 * 1024 * 1024


class OutputPump:
    """Streams fds 1 and 2 to the host as output frames, capped per cell and stream.

    A thread forwards output while a cell runs; when the cell ends, the main thread takes
    what is left in the pipes itself (:meth:`finish`), under the same reading lock, so a
    cell's output always precedes its result and its tail travels in the result's write:
    no hand-off to the thread and back, and one wake-up of the host instead of two.
    """

    def __init__(self, io: FrameIO, stdout_fd: int, stderr_fd: int,
                 on_flood: Callable[[], None] = lambda: None) -> None:
        self._io = io
        self._on_flood = on_flood
        self._stop_after = 0
        self.flooded = False
        self._fds = {stdout_fd: "stdout", stderr_fd: "stderr"}
        self._ended: set[int] = set()   # pipes whose every write end was closed
        # both pipes asked at once in finish's fast path: one poll(0), not an ioctl each
        self._pending = select.poll()
        for fd in self._fds:
            os.set_blocking(fd, False)
            self._pending.register(fd, select.POLLIN)
        self._reading = threading.Lock()   # held while a pipe is read and its frames sent
        self._state = threading.Lock()
        self._cell: str | None = None
        self._limit = 0
        self._sent = {"stdout": 0, "stderr": 0}
        self._dropped = {"stdout": 0, "stderr": 0}
        self._decoders = {name: codecs.getincrementaldecoder("utf-8")("replace")
                          for name in self._fds.values()}
        threading.Thread(target=self._run, name="rlmbox-output", daemon=True).start()

    def begin(self, cell_id: str, limit: int, stop_after: int) -> None:
        """A new cell: ``limit`` bytes kept per stream; past ``stop_after`` bytes written in
        all, the cell is interrupted (``on_flood``) instead of writing on for its whole
        wall time. Honest-path only: the host's wall time is the bound that holds."""
        with self._state:
            self._cell, self._limit, self._stop_after = cell_id, limit, stop_after
            self.flooded = False
            self._sent = {"stdout": 0, "stderr": 0}
            self._dropped = {"stdout": 0, "stderr": 0}
            for decoder in self._decoders.values():   # an earlier cell's unfinished UTF-8
                decoder.reset()                        # sequence is not this cell's output

    def finish(self) -> tuple[dict[str, int], bytes]:
        """Ends the cell: returns its dropped bytes, and the output frames for what was
        still in the pipes, encoded, for the caller to send in front of the result (all
        the thread sent went out before). A watched pipe is readable when it holds bytes
        or has no writer left; the latter is read once and then watched no more."""
        tail: list[bytes] = []
        with self._reading:
            if self._pending.poll(0):
                for fd in self._fds:
                    self._drain(fd, _DRAIN_LIMIT, tail.append)
            with self._state:
                self._cell = None
                return dict(self._dropped), b"".join(tail)

    def _run(self) -> None:
        while watched := [fd for fd in self._fds if fd not in self._ended]:
            try:
                ready, _, _ = select.select(watched, [], [])
            except InterruptedError:
                continue
            for fd in ready:
                with self._reading:
                    self._drain(fd, _OUTPUT_CHUNK, self._io.send_encoded)

    def _drain(self, fd: int, budget: int, emit: Callable[[bytes], None]) -> None:
        while budget > 0:
            try:
                data = os.read(fd, min(_OUTPUT_CHUNK, budget))
            except BlockingIOError:
                return
            if not data:
                self._end(fd)
                return
            budget -= len(data)
            frame = self._forward(self._fds[fd], data)
            if frame:
                emit(frame)

    def _end(self, fd: int) -> None:
        """A cell closed every write end of this pipe (fd 1 or 2, and any child's copy):
        it stays readable at its end for good, so it is watched no more, or the thread
        and every cell's ``finish`` would spin on it. Called under ``_reading``."""
        if fd not in self._ended:
            self._ended.add(fd)
            self._pending.unregister(fd)

    def _forward(self, stream: str, data: bytes) -> bytes:
        """The output frame for ``data`` (empty when it is dropped), counted and capped."""
        with self._state:
            if self._cell is None:
                return b""  # written between cells (a background child): belongs to no cell
            room = max(0, self._limit - self._sent[stream])
            keep, lost = data[:room], len(data) - min(room, len(data))
            self._sent[stream] += len(keep)
            self._dropped[stream] += lost
            cell = self._cell
            written = sum(self._sent.values()) + sum(self._dropped.values())
            flood = not self.flooded and written > self._stop_after
            self.flooded = self.flooded or flood
        if flood:
            self._on_flood()
        text = self._decoders[stream].decode(keep) if keep else ""
        if not text:
            return b""
        return protocol.encode({"t": "output", "id": cell, "stream": stream, "data": text})
