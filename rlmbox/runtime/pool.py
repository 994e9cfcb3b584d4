"""Warm pools: sandboxes started ahead of demand, handed out once, never reused.

A pool holds started sandboxes of one (backend, spec) whose agents have said ``ready``.
``acquire`` takes one (or starts one cold when the pool is empty) and wakes the refill
thread. A sandbox that died while waiting, or sat idle past ``max_idle_s``, is killed and
never handed out.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Callable

from rlmbox.errors import RlmboxError
from rlmbox.sandboxes.base import Sandbox

REFILL_DELAY_S = 0.05


class WarmPool:
    """Keeps up to ``size`` ready sandboxes made by ``factory``."""

    def __init__(self, factory: Callable[[], Sandbox], size: int, *,
                 max_idle_s: float = 600.0) -> None:
        self._factory = factory
        self._size = size
        self._max_idle_s = max_idle_s
        self._ready: collections.deque[tuple[float, Sandbox]] = collections.deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._refill, name="rlmbox-pool", daemon=True)
        if size > 0:
            self._thread.start()
            self._wake.set()

    def acquire(self) -> tuple[Sandbox, bool]:
        """A fresh sandbox and whether it came warm from the pool."""
        while True:
            with self._lock:
                item = self._ready.popleft() if self._ready else None
            self._wake.set()
            if item is None:
                return self._factory(), False
            _, sandbox = item
            if sandbox.death_reason() is None:
                return sandbox, True
            sandbox.kill()

    @property
    def available(self) -> int:
        with self._lock:
            return len(self._ready)

    def wait_full(self, timeout: float = 30.0) -> bool:
        """Blocks until the pool holds ``size`` sandboxes (for benchmarks and start-up)."""
        deadline = time.monotonic() + timeout
        while self.available < self._size:
            if time.monotonic() > deadline or self._closed:
                return False
            time.sleep(0.005)
        return True

    def _refill(self) -> None:
        while not self._closed:
            self._wake.wait(timeout=min(30.0, self._max_idle_s))
            self._wake.clear()
            time.sleep(REFILL_DELAY_S)   # let the session that just took one finish its init
            self._expire()
            while not self._closed and self.available < self._size:
                try:
                    sandbox = self._factory()
                except RlmboxError as exc:
                    self.last_error = str(exc)
                    time.sleep(1.0)   # do not spin on a broken backend
                    break
                with self._lock:
                    if self._closed:
                        sandbox.kill()
                        return
                    self._ready.append((time.monotonic(), sandbox))

    def _expire(self) -> None:
        cutoff = time.monotonic() - self._max_idle_s
        with self._lock:
            stale = [s for t, s in self._ready if t < cutoff]
            self._ready = collections.deque((t, s) for t, s in self._ready if t >= cutoff)
        for sandbox in stale:
            sandbox.kill()

    def close(self) -> None:
        """Kills every pooled sandbox; the pool hands out nothing more."""
        self._closed = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        with self._lock:
            items, self._ready = list(self._ready), collections.deque()
        for _, sandbox in items:
            with contextlib.suppress(RlmboxError):
                sandbox.kill()
