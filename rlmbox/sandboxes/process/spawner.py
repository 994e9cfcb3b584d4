"""A single long-lived thread that starts every sandbox process.

bubblewrap's ``--die-with-parent`` (PR_SET_PDEATHSIG) fires when the *thread* that forked
it exits, not the process. Forking from whatever thread asked (a short-lived worker, a pool
refill) would kill sandboxes early. Forking from one thread that lives as long as the host
process makes the signal mean what we want: the host died, so its sandboxes die too.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")

_queue: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
_started = threading.Lock()
_thread: threading.Thread | None = None


def _serve() -> None:
    while True:
        fn, future = _queue.get()
        if not future.set_running_or_notify_cancel():
            continue
        try:
            future.set_result(fn())
        except BaseException as exc:
            future.set_exception(exc)


def spawn(fn: Callable[[], T]) -> T:
    """Runs ``fn`` (which forks) on the spawner thread and returns its result."""
    global _thread  # noqa: PLW0603 - one spawner per process
    with _started:
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_serve, name="rlmbox-spawner", daemon=True)
            _thread.start()
    if threading.current_thread() is _thread:
        return fn()
    future: Future[T] = Future()
    _queue.put((fn, future))
    return future.result()
