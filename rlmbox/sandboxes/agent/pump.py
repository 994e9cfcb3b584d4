"""The output pump: fds 1 and 2 of model code streamed to the host, capped per cell."""

from __future__ import annotations

import codecs
import os
import select
import threading
from collections.abc import Callable

from rlmbox.sandboxes.agent.frame_io import FrameIO

_OUTPUT_CHUNK = 64 * 1024
_DRAIN_LIMIT = 4 * 1024 * 1024


class OutputPump:
    """Streams fds 1 and 2 to the host as output frames, capped per cell and stream.

    One thread owns both pipes and the sync requests, so output of a cell is always sent
    before that cell's result frame.
    """

    def __init__(self, io: FrameIO, stdout_fd: int, stderr_fd: int,
                 on_flood: Callable[[], None] = lambda: None) -> None:
        self._io = io
        self._on_flood = on_flood
        self._stop_after = 0
        self.flooded = False
        self._fds = {stdout_fd: "stdout", stderr_fd: "stderr"}
        # both pipes asked at once in finish's fast path: one poll(0), not an ioctl each
        self._pending = select.poll()
        for fd in self._fds:
            os.set_blocking(fd, False)
            self._pending.register(fd, select.POLLIN)
        self._ctl_r, self._ctl_w = os.pipe()
        self._synced = threading.Event()
        self._state = threading.Lock()
        self._busy = False
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

    def finish(self) -> dict[str, int]:
        """Sends everything written so far, ends the cell; returns dropped bytes.

        Fast path: when both pipes are empty and the pump holds no data, nothing is in
        flight and no thread handoff is needed (the pump marks itself busy under the lock
        before it reads). The pipes' write ends stay open in this process, so a readable
        pipe is one holding bytes.
        """
        with self._state:
            if not self._busy and not self._pending.poll(0):
                self._cell = None
                return dict(self._dropped)
        self._synced.clear()
        os.write(self._ctl_w, b"s")
        self._synced.wait()
        with self._state:
            self._cell = None
            return dict(self._dropped)

    def _run(self) -> None:
        watched = [*self._fds, self._ctl_r]
        while True:
            try:
                ready, _, _ = select.select(watched, [], [])
            except InterruptedError:
                continue
            for fd in ready:
                if fd == self._ctl_r:
                    os.read(self._ctl_r, 64)
                    for out_fd in self._fds:
                        self._drain(out_fd, _DRAIN_LIMIT)
                    self._synced.set()
                else:
                    self._drain(fd, _OUTPUT_CHUNK)

    def _drain(self, fd: int, budget: int) -> None:
        with self._state:
            self._busy = True
        try:
            self._drain_unmarked(fd, budget)
        finally:
            with self._state:
                self._busy = False

    def _drain_unmarked(self, fd: int, budget: int) -> None:
        while budget > 0:
            try:
                data = os.read(fd, min(_OUTPUT_CHUNK, budget))
            except BlockingIOError:
                return
            if not data:
                return
            budget -= len(data)
            self._forward(self._fds[fd], data)

    def _forward(self, stream: str, data: bytes) -> None:
        with self._state:
            if self._cell is None:
                return  # written between cells (a background child): belongs to no cell
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
        if text:
            self._io.send({"t": "output", "id": cell, "stream": stream, "data": text})
