"""One thread of the host polls the CPU time of every sandbox it watches.

``cpu_seconds`` binds a sandbox's whole process tree only if the host reads its cgroup's
CPU time and kills it at the limit (RLIMIT_CPU binds each process alone), and the process
backend also lowers a busy sandbox's CPU weight. A thread per sandbox waking ten times a
second cost the host 15% of a core for 64 idle process sessions on the development machine:
each wake-up takes the GIL, and in the daemon competes with every tenant's requests. One
thread sweeping every watch does the same reads with one wake-up per interval.

A watch is a ``tick`` callable, run once per sweep until it returns False. It must be quick:
anything slow it decides (killing a sandbox) it starts on a thread of its own, or the next
sandboxes' checks wait.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable

log = logging.getLogger(__name__)

Tick = Callable[[], bool]


def off_the_sweep(action: Callable[[], None], name: str) -> None:
    """Runs a watch's slow decision (killing its sandbox) on a thread of its own, so the
    sweep goes on to the other sandboxes at once."""
    threading.Thread(target=action, name=f"cpu-kill-{name}", daemon=True).start()


class Watch:
    """One registered tick; ``stop`` removes it (idempotent)."""

    def __init__(self, poller: CpuPoller, tick: Tick) -> None:
        self._poller = poller
        self.tick = tick
        self.failed = False   # logged once, not every sweep

    def stop(self) -> None:
        self._poller.unwatch(self)


class CpuPoller:
    """Runs every watch's tick each ``interval_s`` on one daemon thread, started lazily
    (and again in a forked child, which has none)."""

    def __init__(self, interval_s: float, name: str) -> None:
        self._interval = interval_s
        self._name = name
        self._watches: dict[int, Watch] = {}
        self._lock = threading.Lock()
        self._owner_pid = -1
        _every_poller.add(self)

    def watch(self, tick: Tick) -> Watch:
        """Ticks ``tick`` from the next sweep on, until it returns False or is stopped.

        Raises:
            RuntimeError: the thread could not be started (the next watch tries again).
        """
        watch = Watch(self, tick)
        with self._lock:
            if self._owner_pid != os.getpid():
                threading.Thread(target=self._run, name=self._name, daemon=True).start()
                self._owner_pid = os.getpid()   # only once a thread really runs
            self._watches[id(watch)] = watch
        return watch

    def forget_after_fork(self) -> None:
        """In a forked child: the parent's sandboxes are not this process's to poll (or
        kill), its thread did not survive the fork, and its lock may be held forever."""
        self._watches = {}
        self._lock = threading.Lock()
        self._owner_pid = -1

    def unwatch(self, watch: Watch) -> None:
        with self._lock:
            self._watches.pop(id(watch), None)

    def _run(self) -> None:
        while True:
            time.sleep(self._interval)
            with self._lock:
                watches = list(self._watches.values())
            for watch in watches:
                if id(watch) not in self._watches:
                    continue   # stopped during this sweep: its sandbox is gone
                try:
                    keep = watch.tick()
                except Exception:   # one sandbox's failed read must not end the others'
                    if not watch.failed:
                        watch.failed = True
                        log.exception("a CPU watch failed; it is polled again each sweep")
                    keep = True
                if not keep:
                    self.unwatch(watch)


class _SharedPollers:
    """The process's pollers, one per interval the backends use."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_interval: dict[float, CpuPoller] = {}

    def get(self, interval_s: float) -> CpuPoller:
        with self.lock:
            poller = self.by_interval.get(interval_s)
            if poller is None:
                poller = self.by_interval[interval_s] = CpuPoller(interval_s,
                                                                  "rlmbox-cpu-watch")
            return poller


_shared = _SharedPollers()
_every_poller: weakref.WeakSet[CpuPoller] = weakref.WeakSet()


def _forget_after_fork() -> None:
    _shared.lock = threading.Lock()
    for poller in list(_every_poller):
        poller.forget_after_fork()


os.register_at_fork(after_in_child=_forget_after_fork)


def shared_poller(interval_s: float) -> CpuPoller:
    """The process's poller for ``interval_s`` (one per interval the backends use)."""
    return _shared.get(interval_s)
