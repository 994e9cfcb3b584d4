"""A pinned process's pidfd is used and released under one lock.

``signal`` checked the fd, then sent on it; a close on another thread (a session's close
kills its sandbox while its cell's thread, or an interrupt, signals the same process) could
release the fd in between: ``OSError(EBADF)`` reached ``exec`` (seen once in a full run, in
``test_review_boundary.py::test_closing_a_session_mid_cell_ends_the_cell_cleanly``), and an
fd number reused by another open in that gap would have taken the signal elsewhere.
"""

from __future__ import annotations

import subprocess
import sys
import threading

from rlmbox.sandboxes.process.pidfd import PinnedProcess


def test_signals_racing_a_release_never_touch_a_closed_fd() -> None:
    child = subprocess.Popen(["sleep", "30"])
    errors: list[BaseException] = []
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for _ in range(300):
            pinned = PinnedProcess.pin(child.pid, lambda _pid: True)
            assert pinned is not None
            stop = threading.Event()

            def hammer(p: PinnedProcess = pinned, done: threading.Event = stop) -> None:
                try:
                    while not done.is_set() and p.signal(0):
                        p.exited()
                except BaseException as exc:
                    errors.append(exc)

            worker = threading.Thread(target=hammer)
            worker.start()
            pinned.release()
            stop.set()
            worker.join()
            if errors:
                break
    finally:
        sys.setswitchinterval(interval)
        child.kill()
        child.wait()
    assert errors == []
