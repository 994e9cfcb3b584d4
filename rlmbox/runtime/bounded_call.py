"""Host work bounded by wall time: a handler runs on a thread of its own, its caller waits
no later than a deadline.

A Python thread cannot be killed, so a handler that hangs (a tool asleep, an LM request
that never returns) is *abandoned*: the caller gets :class:`CallAbandoned` at the deadline
and goes on (ends the cell), while the handler's thread runs to its end and then reports
through ``on_late``. Every call gets a thread of its own at once: an idle one parked by
an earlier call (starting a thread costs about 100 µs, a hand-over a third of it), else a
new one, never a wait for a busy one, so a call made from inside another call (a child
session's calls inside ``rlm_query``) cannot wait on a thread its own caller holds.
"""

from __future__ import annotations

import contextvars
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

T = TypeVar("T")


@dataclass(frozen=True)
class Deadline:
    """When waiting must stop (``time.monotonic()`` seconds), and which limit says so."""

    at: float
    limit: str
    seconds: float

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def passed(self) -> bool:
        return time.monotonic() >= self.at

    def sooner(self, other: Deadline | None) -> Deadline:
        return other if other is not None and other.at < self.at else self


#: the ``limit`` of a call cut by an interrupt of its cell, or by its session's close
INTERRUPT, CLOSE = "interrupt", "close"


class CallAbandoned(Exception):
    """The work was still running at its deadline, or when its cell was interrupted; its
    thread was left to finish."""

    def __init__(self, deadline: Deadline) -> None:
        super().__init__({INTERRUPT: "the cell was interrupted",
                          CLOSE: "the session was closed"}.get(
            deadline.limit, f"{deadline.limit} ({deadline.seconds:g} s) ran out"))
        self.deadline = deadline


class NotRun(Exception):
    """Given to ``on_late`` for abandoned work that never started (it was cut, or its
    deadline passed, before a thread took it): its slot frees, but nothing ended."""


class WorkExited(Exception):
    """The work raised what is not an ``Exception`` (``SystemExit`` from a tool's argparse,
    ``KeyboardInterrupt`` raised by the tool itself): the call ends as failed, as with any
    error. Raised as it was, it passed every ``except Exception`` that settles and records a
    call, and asked the host program to exit."""

    def __init__(self, raised: BaseException) -> None:
        super().__init__(f"the function raised {type(raised).__name__}: {raised}")


class CallCuts:
    """The waits of one session's running calls, so an interrupt of the cell ends them at
    once as their deadline would (the cell stops waiting; a hung tool is abandoned), and
    so a call the cell makes after the interrupt is not started at all. Armed again at
    the start of every cell."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waits: set[Callable[[str], None]] = set()
        self.interrupted = False
        self.limit = INTERRUPT   # what cut them
        self.cell = 0            # which cell's calls these are (``arm`` counts cells)
        # calls of this cell ended or refused by what stops it (noted by each call, on its
        # own thread, before the cell can end): the interrupt or deadline reached the cell
        # through them, whatever the cell then did (``Session._finish``)
        self.calls_reached = 0

    def arm(self) -> None:
        """A new cell: nothing interrupted yet."""
        with self._lock:
            self.interrupted = False
            self.calls_reached = 0
            self.cell += 1

    def cut(self, limit: str = INTERRUPT, cell: int | None = None) -> None:
        """Ends every call's wait now, and refuses the cell's later calls; ``limit``
        (``INTERRUPT`` or ``CLOSE``) is what their records name. With ``cell`` (the
        ``cell`` read when the interrupt began), only if that cell is still the one
        running: an interrupt that arrives as the next cell starts does not cut it."""
        with self._lock:
            if cell is not None and cell != self.cell:
                return
            if not self.interrupted:
                self.interrupted, self.limit = True, limit
            waits = list(self._waits)
        for wait in waits:   # each call it ends notes it on its own thread, in its cell
            wait(self.limit)

    def add(self, wait: Callable[[str], None]) -> bool:
        """Registers a wait to end on :meth:`cut`; False (nothing registered) once cut."""
        with self._lock:
            if self.interrupted:
                return False
            self._waits.add(wait)
            return True

    def note_reached(self) -> None:
        """A call of this cell was ended or refused by its interrupt, its close or its own
        deadline (review s15d: counted in ``cut`` instead, a call that had returned its
        value was counted, and a late count landed in the next cell)."""
        with self._lock:
            self.calls_reached += 1

    def discard(self, wait: Callable[[str], None]) -> None:
        with self._lock:
            self._waits.discard(wait)


class _Outcome(Generic[T]):
    """What the worker thread produced, handed over under a lock: the waiter and the
    worker agree on exactly one of "finished in time" and "abandoned".

    The waiter sleeps on ``finished``, a lock held from the start and released by the
    worker: a bare lock hands over in about 19 µs where an ``Event`` (a ``Condition``
    in Python) takes 26 µs, on every host call."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.finished = threading.Lock()
        self.finished.acquire()
        self.done = False
        self.value: T | None = None
        self.error: BaseException | None = None
        self.abandoned = False
        self.started = False   # the worker took the job (else it never runs ``work``)
        self.cut_by: str | None = None   # ``cut`` released ``finished``: the worker must not

    def cut(self, limit: str) -> None:
        """Wakes the waiter now (an interrupt, a close): exactly one of this and the
        worker's end releases ``finished``, whichever comes first."""
        with self.lock:
            if self.done or self.cut_by is not None:
                return
            self.cut_by = limit
        self.finished.release()


#: how long a thread waits for another call after its last one before it ends
IDLE_THREAD_SECONDS = 30.0

Job = Callable[[], None]


class _Parked:
    """Threads whose call ended and that wait for another: taken one at a time, never
    waited for. A thread idle for ``IDLE_THREAD_SECONDS`` ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[queue.SimpleQueue[Job]] = []

    def run(self, job: Job, name: str) -> None:
        """Runs ``job`` on an idle thread if there is one, else on a new thread."""
        with self._lock:
            inbox = self._idle.pop() if self._idle else None
        if inbox is not None:
            inbox.put(job)
            return
        threading.Thread(target=self._serve, args=(job,), name=name, daemon=True).start()

    def _serve(self, first: Job) -> None:
        inbox: queue.SimpleQueue[Job] = queue.SimpleQueue()
        job: Job | None = first
        del first
        while job is not None:
            job()
            job = None   # a parked thread keeps nothing of the call it ran (a large reply)
            job = self._wait(inbox)

    def _wait(self, inbox: queue.SimpleQueue[Job]) -> Job | None:
        """The next job handed to this thread, or None when it stayed idle too long."""
        with self._lock:
            self._idle.append(inbox)
        try:
            return inbox.get(timeout=IDLE_THREAD_SECONDS)
        except queue.Empty:
            with self._lock:
                if inbox in self._idle:   # nobody took it: the thread ends
                    self._idle.remove(inbox)
                    return None
            return inbox.get()   # taken just now: its job is on the way


_PARKED = _Parked()


def run_bounded(work: Callable[[], T], deadline: Deadline, *, name: str,
                on_abandon: Callable[[CallAbandoned], None],
                on_late: Callable[[BaseException | None], None],
                cuts: CallCuts | None = None) -> T:
    """Runs ``work`` on a thread of its own; returns its value or raises its exception when it
    ends before ``deadline`` (and before ``cuts`` is cut), else raises :class:`CallAbandoned`.
    What ``work`` raises that is not an ``Exception`` comes as :class:`WorkExited`.

    ``on_abandon`` runs (on the caller's thread) strictly before ``on_late``, which runs
    on the worker thread with the exception (or None) of the abandoned work once it ends:
    settling a call and charging its late usage can never happen in the wrong order. A
    call made after ``cuts`` was cut never starts: it is settled as abandoned at once.
    """
    outcome: _Outcome[T] = _Outcome()
    if cuts is not None and not cuts.add(outcome.cut):
        abandoned = CallAbandoned(Deadline(time.monotonic(), cuts.limit, 0.0))
        with outcome.lock:
            outcome.abandoned = True
            on_abandon(abandoned)
        on_late(NotRun())
        raise abandoned
    try:
        return _wait_bounded(work, deadline, name, on_abandon, on_late, outcome)
    finally:
        if cuts is not None:
            cuts.discard(outcome.cut)


def _wait_bounded(work: Callable[[], T], deadline: Deadline, name: str,
                  on_abandon: Callable[[CallAbandoned], None],
                  on_late: Callable[[BaseException | None], None],
                  outcome: _Outcome[T]) -> T:

    def worker() -> None:
        with outcome.lock:
            # the waiter gave up before this thread began, or will: the call was cut, or its
            # deadline passed while it was handed over (its start record's sync can end
            # past it); the waiter or the cut settles it as never run
            if outcome.abandoned or outcome.cut_by is not None or deadline.passed():
                return
            outcome.started = True
        value: T | None = None
        error: BaseException | None = None
        try:
            value = work()
        except BaseException as exc:   # handed to the waiter, or to on_late
            error = exc
        with outcome.lock:
            outcome.value, outcome.error = value, error
            outcome.done = True
            late = outcome.abandoned
            release = outcome.cut_by is None
        if release:
            outcome.finished.release()
        if late:
            on_late(error)

    # the worker runs in the caller's context: context-local state (the trace's running
    # call, observe/traces.py) follows the call onto its thread
    context = contextvars.copy_context()
    thread_name = f"rlmbox-call-{name}"

    def job() -> None:
        threading.current_thread().name = thread_name
        context.run(worker)

    try:
        _PARKED.run(job, name=thread_name)
        outcome.finished.acquire(timeout=deadline.remaining())
    except BaseException:
        # interrupted (Ctrl-C in the host) while handing the job over or waiting, or just
        # after it ended (a signal that came before the wait is handled after it): the
        # call is abandoned as at its deadline, so its reservation is settled and its
        # outcome recorded, then the interrupt goes on up. A worker that never began (it
        # will not run) or already ended is settled here; one still running, when it ends.
        with outcome.lock:
            began, ended = outcome.started, outcome.done
            outcome.abandoned = True
            on_abandon(CallAbandoned(deadline))
        if ended or not began:
            on_late(outcome.error if began else NotRun())
        raise
    with outcome.lock:
        if not outcome.done:
            outcome.abandoned = True
            began = outcome.started
            abandoned = CallAbandoned(deadline if outcome.cut_by is None else
                                      Deadline(time.monotonic(), outcome.cut_by, 0.0))
            on_abandon(abandoned)
    if not outcome.done:
        if not began:   # the worker will see it abandoned and not run it: settled here
            on_late(NotRun())
        raise abandoned
    if isinstance(outcome.error, Exception):
        raise outcome.error
    if outcome.error is not None:
        raise WorkExited(outcome.error) from outcome.error
    return cast(T, outcome.value)   # set whenever error is None
