"""An interrupt racing a close answers; it never raises.

``interrupt()`` saw the session running and then, taking the state lock again to audit
``cell.interrupt``, found it closed: :class:`SessionClosed` reached the interrupting
caller (the daemon's interrupt request, on a session its reaper or DELETE was closing).
The lock is made to let go at exactly that moment here: on release by the interrupting
thread, the session is closed from another thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType

from rlmbox.runtime.runtime import Runtime
from rlmbox.runtime.session import Session, SessionState

SPIN = "while True:\n    pass\n"


class _CloseOnRelease:
    """The session's state lock; when ``thread`` lets it go the first time while
    armed, ``then`` runs (on another thread, joined) before that thread goes on."""

    def __init__(self, lock: threading.Lock, then: Callable[[], None]) -> None:
        self._lock = lock
        self._then = then
        self.thread: int | None = None

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()
        if self.thread == threading.get_ident():
            self.thread = None
            closer = threading.Thread(target=self._then)
            closer.start()
            closer.join(30)

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def test_an_interrupt_whose_session_closes_after_its_running_check_answers(
        runtime: Runtime) -> None:
    session = runtime.session()
    result: dict[str, object] = {}
    cell = threading.Thread(target=lambda: result.update(r=_run(session)))
    cell.start()
    deadline = time.monotonic() + 10
    while session.state is not SessionState.RUNNING and time.monotonic() < deadline:
        time.sleep(0.005)
    assert session.state is SessionState.RUNNING
    hooked = _CloseOnRelease(session._state_lock, session.close)
    session._state_lock = hooked   # type: ignore[assignment]
    hooked.thread = threading.get_ident()
    answer = session.interrupt("test")   # raised SessionClosed before
    cell.join(30)
    assert answer is True   # the session was running when the interrupt was recorded
    assert session.state.value == SessionState.CLOSED.value   # (mypy narrowed it above)
    assert not cell.is_alive()


def _run(session: Session) -> object:
    try:
        return session.exec(SPIN)
    except Exception as exc:   # the close ends the cell with SessionClosed
        return exc
