"""Session: one REPL namespace in one sandbox, driven cell by cell.

The exec loop reads frames from the sandbox until the cell's result arrives or its wall
time runs out. Every frame is hostile input: output is capped on the host no matter what
the agent claims, calls go to the dispatcher (the one decision seam), a result for any
other cell is ignored, and a protocol violation kills the sandbox. Time, output size and
the call count are measured here, never taken from the sandbox.

The cell's deadline is the sooner of its own wall time and the session's, and it holds
while a host call runs too (the dispatcher abandons a call still running then). A cell
that reaches the session's wall time ends the session: its sandbox is killed and the
session is marked dead.
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import math
import secrets
import threading
import time
import types
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any

from rlmbox.errors import (
    AuditWriteError,
    ProtocolError,
    SandboxCrashed,
    SessionClosed,
    SessionError,
    SessionKilled,
)
from rlmbox.policies.model import Policy
from rlmbox.runtime.bounded_call import INTERRUPT, Deadline
from rlmbox.runtime.bounds import CappedStream, answer_json, capped_answer, capped_error
from rlmbox.runtime.dispatch import CallDispatcher
from rlmbox.runtime.events import EventScope
from rlmbox.runtime.hostfns import tool
from rlmbox.runtime.record_text import text_fields
from rlmbox.runtime.results import CellStatus, ExecResult
from rlmbox.runtime.session_files import FileEntry, SessionFiles
from rlmbox.sandboxes import cell_code
from rlmbox.sandboxes.base import Sandbox, reason_once_dead
from rlmbox.sandboxes.protocol import Frame

MAX_CALLS_PER_CELL = 10_000
#: Sandbox-chosen audit bytes (bodies, error text) of one cell's calls refused before they
#: ran (invalid, denied, over budget): past it the sandbox is killed, so a cell cannot grow
#: the log by megabytes through calls no budget counts.
MAX_REFUSED_AUDIT_BYTES_PER_CELL = 1 << 20
#: How long a close waits for the running cell's host calls to be abandoned and recorded
#: (milliseconds, unless the audit log stalls), so their records precede ``session.end``.
CALLS_SETTLE_S = 5.0
#: How long an interrupt frame may take to write before its SIGINT goes alone (a sandbox
#: that stops reading).
INTERRUPT_FRAME_WAIT_S = 1.0
#: the error of a cell the caller interrupted, as the agent words it for its SIGINT
INTERRUPTED = "KeyboardInterrupt: the cell was interrupted"


class SessionState(enum.Enum):
    READY = "ready"
    RUNNING = "running"
    DEAD = "dead"        # the sandbox was killed; exec refuses
    CLOSED = "closed"


OutputCallback = Callable[[str, str], None]
# (child session id, its depth, a piece of its root model's reply as it streams)
RootTextCallback = Callable[[str, int, str], None]


class _Listener:
    """The caller's ``on_output`` for one cell. A callback that raises is not called again
    for that cell and the failure is audited; the cell runs on, its result unchanged."""

    def __init__(self, callback: OutputCallback | None,
                 failed: Callable[[Exception], None]) -> None:
        self._callback = callback
        self._failed = failed

    def __call__(self, stream: str, text: str) -> None:
        if self._callback is None or not text:
            return
        try:
            self._callback(stream, text)
        except Exception as exc:   # the caller's bug must not end the cell or the session
            self._callback = None
            self._failed(exc)


class Session:
    """A live REPL. Use as a context manager; ``close`` kills the sandbox's whole tree."""

    def __init__(self, *, scope: EventScope, sandbox: Sandbox, policy: Policy,
                 dispatcher: CallDispatcher,
                 transform: Callable[[str], types.CodeType] | None = None,
                 durable_cells: bool = True,
                 on_close: Callable[[Session], None] | None = None,
                 cell_slot: Callable[[], AbstractContextManager[None]] | None = None) -> None:
        self.scope = scope
        self.id = scope.session
        self.parent = scope.parent
        self.depth = scope.depth
        self.tenant = scope.tenant
        self.sandbox = sandbox
        self.policy = policy
        self._dispatcher = dispatcher
        self.ledger = dispatcher.ledger
        self._audit = scope.audit
        self._transform = transform
        self._durable_cells = durable_cells
        self._on_close = on_close
        # held around each cell: an rlm_query child's cell takes its tenant's cell slot
        self._cell_slot = cell_slot or contextlib.nullcontext
        self._state = SessionState.READY
        self._cell_over = False   # the running cell's result is recorded: too late to interrupt
        self._lock = threading.Lock()
        self._state_lock = threading.Lock()   # close() may come from another thread
        # host -> agent frames of a cell (its exec frame, replies, an interrupt frame) are
        # written whole, one at a time: interrupt() writes from another thread
        self._send_lock = threading.Lock()
        # held by an interrupt sending its SIGINT without the send lock (a reply was being
        # written); a cell's exec frame waits for it, so that SIGINT never lands in a later cell
        self._lockless_signal = threading.Lock()
        # under _state_lock: the cell (cuts.cell) whose exec frame is written, and the cell
        # an interrupt is due for, until one thread delivers it (_deliver_due_locked)
        self._sent_cell = 0
        self._interrupt_due = 0
        self._cell_id = ""   # the running cell's frame id, for its interrupt frame
        self._framed_cell = ""   # under _send_lock: the cell an interrupt frame was sent for
        self._cells = itertools.count(1)
        self._started = time.monotonic()
        self.death_reason: str | None = None
        self._tools_to_bind: list[str] = []   # added since the last cell: bound by the next
        self.cells_run = 0
        # where the root-model replies of this session's rlm_query children stream to
        self.root_text: RootTextCallback | None = None
        # an rlm_query child's cells end by its caller's deadline too, so an abandoned call
        # stops its whole subtree, not just the child it started
        self.caller_deadline: Deadline | None = None
        self._files = SessionFiles(sandbox=sandbox, policy=policy, dispatcher=dispatcher,
                                   event=self._event, kill=self._kill)

    # --- public API -------------------------------------------------------------------

    @property
    def dispatcher(self) -> CallDispatcher:
        """The seam every host call and root-model completion of this session passes."""
        return self._dispatcher

    def add_tools(self, tools: Mapping[str, Callable[..., Any]]) -> None:
        """Registers more tools on the running session (a frontend may hand a running
        interpreter new ones, as DSPy does): host functions ``tool.<name>`` that the policy
        decides like those the session started with, bound in the sandbox from the next
        cell on. Audited as ``session.functions_added``.

        Raises:
            PolicyError: a name is not an identifier or is already registered.
            SessionClosed: the session was closed.
            SessionKilled: an earlier cell killed the sandbox.
        """
        functions = [tool(name, fn) for name, fn in tools.items()]
        with self._state_lock:
            self._check_usable()
            self._dispatcher.add_functions(functions)
            self.scope.event("session.functions_added",
                             functions=sorted(function.name for function in functions))
            self._tools_to_bind.extend(tools)

    @property
    def state(self) -> SessionState:
        return self._state

    def interrupt(self, by: str = "caller") -> bool:
        """Asks the running cell to stop, from any thread: SIGINT, so the cell ends with
        ``KeyboardInterrupt`` (status ``interrupted``) and the namespace is kept; a cell
        that catches it is still bounded by its wall time. A host call the cell waits on is
        abandoned at once, as at its deadline (``host.call`` outcome ``abandoned``,
        ``limit: interrupt``; ``TimeoutError`` in the cell), and a call the cell makes after
        it is not run; a cell such a cut reached ends ``interrupted`` whatever it then did.
        True says the interrupt was sent to the running cell (and recorded), not that it
        stopped it: a cell whose code ended before the SIGINT or a cut call reached it keeps
        its own status. False once the cell's result is recorded. Audited as
        ``cell.interrupt`` naming ``by``; under cell durability the record is on disk
        before this returns True. Returns False, doing nothing, when no cell is running."""
        with self._state_lock:   # the cell is armed as the state becomes RUNNING
            if self._state is not SessionState.RUNNING or self._cell_over:
                return False
            cell = self._dispatcher.cuts.cell
            self._interrupt_due = cell
            # in the same hold: a close in between made the record raise SessionClosed
            self.scope.event("cell.interrupt", by=by)
        self._dispatcher.cuts.cut(cell=cell)
        # delivered here if the frames are free, else by the cell's thread once its write
        # ends (it looks after each one): a sandbox that stops reading a reply cannot hold
        # this caller (a daemon thread) up. A cell whose exec frame is written and whose
        # frames are busy is running (a reply is on its way): SIGINT now, the frame after.
        if self._send_lock.acquire(blocking=False):
            try:
                self._deliver_due_locked()
            finally:
                self._send_lock.release()
        else:
            self._signal_without_send_lock(cell)
        if self._durable_cells:
            self._audit.sync()
        return True

    def _signal_without_send_lock(self, cell: int) -> None:
        """SIGINT for ``cell`` while another thread writes its frames (the frame follows
        from that thread). The next cell's exec frame waits for ``_lockless_signal``, and a
        cell no longer the current one gets nothing: the SIGINT is sent before any later
        cell's exec frame (review s13: a kill delayed past the cell's end hit the next)."""
        with self._lockless_signal:
            with self._state_lock:
                current = self._sent_cell == cell == self._dispatcher.cuts.cell
            if current:
                self.sandbox.interrupt()

    def _deliver_due_locked(self) -> None:
        """With the send lock held: the due interrupt, if its cell's exec frame is written
        and it is still the running cell: an interrupt frame naming the cell, then SIGINT.
        The agent ignores a SIGINT that lands outside a cell; the frame, written first, is
        what it finds as the cell begins (agent/frame_io.py), so an interrupt that comes as
        a cell starts is not lost. Both go out under the lock, so the next cell's exec frame
        cannot be written in between: the SIGINT of an interrupt never lands in a later cell."""
        with self._state_lock:
            cell = self._interrupt_due
            if not cell or cell != self._dispatcher.cuts.cell:
                self._interrupt_due = 0   # that cell is over: nothing of it reaches the next
                return
            if cell != self._sent_cell:
                return   # its exec frame is not written: the cell's thread delivers it after
            self._interrupt_due, cell_id = 0, self._cell_id
        self._signal_cell_locked(cell_id)

    def _signal_cell_locked(self, cell_id: str) -> None:
        """With the send lock held: the interrupt frame naming ``cell_id`` (once a cell: the
        agent needs one, and a cell that reads nothing had its pipe filled by a frame per
        interrupt, each interrupt then waiting for the write: review s13b), then SIGINT."""
        if self._framed_cell != cell_id:
            self._framed_cell = cell_id
            with contextlib.suppress(SandboxCrashed, ProtocolError):
                self.sandbox.send({"t": "interrupt", "id": cell_id}, INTERRUPT_FRAME_WAIT_S)
        self.sandbox.interrupt()

    def _send_in_cell(self, frame: Frame, timeout: float, *, opens: bool = False) -> None:
        """A frame of the running cell (``opens``: its exec frame), then any interrupt that
        came due while it was written (the interrupting thread did not wait for the lock:
        it set the interrupt due before trying it, so this look, after the lock is let go,
        finds it)."""
        if opens:   # an interrupt of an earlier cell signalling now finishes first
            with self._lockless_signal:
                pass
        with self._send_lock:
            self.sandbox.send(frame, timeout)
            if opens:
                with self._state_lock:
                    self._sent_cell = self._dispatcher.cuts.cell
        if self._interrupt_due:
            with self._send_lock:
                self._deliver_due_locked()

    def exec(self, code: str, *, timeout: float | None = None,
             on_output: OutputCallback | None = None,
             on_root_text: RootTextCallback | None = None) -> ExecResult:
        """Runs one cell. Returns its result; raises only when the session cannot run it.

        Args:
            code: the cell's source.
            timeout: shortens the policy's cell wall time; a value that is not a positive
                number, or is over ``limits.cell_timeout_s``, raises ``ValueError``.
            on_output: called as ``on_output(stream, text)`` (``stream`` is ``"stdout"``
                or ``"stderr"``) on this thread as the cell's output arrives, with exactly
                the text the result will hold, in order, after the per-cell cap (the
                truncation marker is only in the result). If it raises, it is not called
                again for this cell, an ``output.callback_failed`` event is audited, and
                the cell and its result are unaffected.
            on_root_text: called as ``on_root_text(child_id, depth, text)`` from the
                call's thread as the root model of an ``rlm_query`` child (or grandchild)
                this cell starts streams its replies; metering and audit are the same as
                without it. If it raises, it is not called again for that child.

        Raises:
            SessionClosed: the session was closed.
            SessionKilled: an earlier cell killed the sandbox.
            SessionError: the session's total wall time is spent.
            AuditWriteError: the audit log failed (fail closed).
        """
        if not isinstance(code, str):
            raise TypeError("code must be a str")
        self.check_timeout(timeout)
        with self._cell_slot(), self._lock:
            with self._state_lock:   # a close() in between must win, not be overwritten
                self._check_usable()
                self._state = SessionState.RUNNING
                self._cell_over = False
                self._dispatcher.cuts.arm()   # with the state: interrupt() reads all three
            previous, self.root_text = self.root_text, on_root_text or self.root_text
            try:
                result = self._run(code, timeout, on_output)
            finally:
                self.root_text = previous
                self._transition(SessionState.READY, only_from=SessionState.RUNNING)
            if self._durable_cells:
                self._audit.sync()   # acknowledged only once its events are durable
            return result

    def write_file(self, path: str, data: bytes | str) -> None:
        """Writes ``data`` (str as UTF-8) to ``path`` in the sandbox's writable area,
        replacing a file there; decided as ``files.write`` and audited.

        Raises:
            FileTransferRefused: a path outside the area or through a symlink out of it,
                over ``limits.file_transfer_mb``, or the sandbox could not write it
                (``limits.file_size_mb``, ``disk_mb``).
            PolicyDenied: the policy does not permit ``files.write``.
        """
        with self._files_turn():
            self._files.write(path, data)

    def read_file(self, path: str) -> bytes:
        """The bytes of the file at ``path`` in the writable area (``files.read``); raises
        as :meth:`write_file` does."""
        with self._files_turn():
            return self._files.read(path)

    def list_files(self, path: str) -> list[FileEntry]:
        """The entries of the directory ``path`` in the writable area (``files.list``):
        ``{name, size, kind}``, symlinks not followed, at most 10,000."""
        with self._files_turn():
            return self._files.list_dir(path)

    @contextlib.contextmanager
    def _files_turn(self) -> Iterator[None]:
        """A transfer waits for the running cell (they share the frame stream) and is
        acknowledged only once its audit record is durable."""
        with self._lock:
            with self._state_lock:
                self._check_usable()
            yield
            if self._durable_cells:
                self._audit.sync()

    def close(self, reason: str = "closed") -> None:
        """Kills the sandbox (every process, escapees included). Idempotent, and safe
        from another thread while a cell runs (the daemon's DELETE and reaper, an abandoned
        ``rlm_query`` closing its child): the state is CLOSED before the kill, so the
        running cell raises :class:`SessionClosed` and records nothing after
        ``session.end``. A host call the cell waits on is abandoned first and its
        ``host.call`` written before the end; only its ``host.call.late``, when the
        function really returns, comes after."""
        with self._state_lock:
            if self._state is SessionState.CLOSED:
                return
            self._state = SessionState.CLOSED
        self.sandbox.kill()
        try:
            # a host call the cell waits on is abandoned, its record written before the end
            self._dispatcher.close(CALLS_SETTLE_S)
            self._files.cut_by_close(self.scope.event)   # and a file transfer's
            problems = self.sandbox.cleanup_problems()
            if problems:
                self.scope.event("sandbox.cleanup_failed", problems=problems)
            self.scope.event("session.end", reason=reason, cells=self.cells_run,
                        duration_s=round(time.monotonic() - self._started, 6),
                        death_reason=self.death_reason)
            self._audit.sync()
        finally:
            if self._on_close is not None:
                self._on_close(self)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close("exception" if exc_type else "closed")

    # --- internals --------------------------------------------------------------------

    def _event(self, event: str, **attrs: Any) -> None:
        """Audits one event of a cell; once the session is closed a cell records nothing
        more (``session.end`` stays the last record) and ends with :class:`SessionClosed`.
        A ``cell.result`` ends the cell for :meth:`interrupt`, in the same hold (review
        s15c: an interrupt after it answered True and was recorded after it)."""
        with self._state_lock:
            if self._state is SessionState.CLOSED:
                raise SessionClosed(f"session {self.id} was closed during the cell")
            self.scope.event(event, **attrs)
            if event == "cell.result":
                self._cell_over = True

    def _transition(self, to: SessionState, only_from: SessionState | None = None) -> None:
        """Moves to ``to`` (if now in ``only_from``, when given); closed stays closed."""
        with self._state_lock:
            if self._state is SessionState.CLOSED:
                return
            if only_from is None or self._state is only_from:
                self._state = to

    def _check_usable(self) -> None:
        if self._state is SessionState.CLOSED:
            raise SessionClosed(f"session {self.id} is closed")
        if self._state is SessionState.DEAD:
            raise SessionKilled(f"session {self.id} is dead: {self.death_reason}")
        elapsed = time.monotonic() - self._started
        if elapsed >= self.policy.limits.session_timeout_s:
            raise SessionError(f"session {self.id} used its wall time of "
                               f"{self.policy.limits.session_timeout_s:g} s")

    def check_timeout(self, timeout: object) -> None:
        """See ``check_cell_timeout``."""
        check_cell_timeout(self.policy, timeout)

    def _cell_deadline(self, timeout: float | None) -> Deadline:
        """The sooner of the cell's wall time and the session's, named for the reports."""
        limits = self.policy.limits
        budget = limits.cell_timeout_s if timeout is None else min(timeout, limits.cell_timeout_s)
        cell = Deadline(time.monotonic() + budget, "cell_timeout_s", budget)
        return cell.sooner(Deadline(self._started + limits.session_timeout_s,
                                    "session_timeout_s", limits.session_timeout_s)
                           ).sooner(self.caller_deadline)

    def _run(self, code: str, timeout: float | None,
             on_output: OutputCallback | None) -> ExecResult:
        cell_id = f"{next(self._cells)}-{secrets.token_hex(4)}"
        self.cells_run += 1
        started = time.monotonic()
        self._event("code.exec", cell=cell_id, bodies={"code": code})
        frame: dict[str, Any] = {"t": "exec", "id": cell_id, "code": code}
        with self._state_lock:
            self._cell_id = cell_id   # read once its exec frame is written (_sent_cell)
            if self._tools_to_bind:
                frame["tools"], self._tools_to_bind = sorted(self._tools_to_bind), []
        if self._transform is not None:
            try:
                frame.update(cell_code.pack(self._transform(code)))
            except SessionError:
                raise
            except Exception as exc:
                self._event("code.rejected", cell=cell_id, reason=str(exc))
                return self._result(cell_id, started, "error", error=str(exc))
        deadline = self._cell_deadline(timeout)
        try:
            self._send_in_cell(frame, deadline.remaining(), opens=True)
        except (SandboxCrashed, ProtocolError) as exc:
            return self._killed(cell_id, started, CappedStream(0), CappedStream(0), 0, exc)
        listener = _Listener(on_output, lambda exc: self._event(
            "output.callback_failed", cell=cell_id, error=f"{type(exc).__name__}: {exc}"[:500]))
        return self._await_result(cell_id, started, deadline, listener)

    def _await_result(self, cell_id: str, started: float, deadline: Deadline,
                      listener: _Listener) -> ExecResult:
        limit = self.policy.limits.output_bytes
        out, err = CappedStream(limit), CappedStream(limit)
        calls = 0
        refused_before = self._dispatcher.refused_audit_bytes
        interrupted = False
        wait_until = deadline
        while True:
            try:
                frame = self.sandbox.recv(wait_until.remaining())
            except (SandboxCrashed, ProtocolError) as exc:
                return self._killed(cell_id, started, out, err, calls, exc)
            if frame is None:
                if not interrupted:
                    wait_until, interrupted = self._interrupt_at(deadline, cell_id), True
                    continue
                spent = self._session_spent(deadline)
                return self._killed(cell_id, started, out, err, calls, None,
                                    reason=(f"{spent}; " if spent else "") + "the cell ignored "
                                    "the interrupt past its grace period; the sandbox was killed")
            kind = frame["t"]
            if kind == "output" and frame["id"] == cell_id:
                stream = "stdout" if frame["stream"] == "stdout" else "stderr"
                listener(stream, (out if stream == "stdout" else err).add(frame["data"]))
            elif kind == "call":
                calls += 1
                overrun = self._calls_overrun(calls, refused_before)
                if overrun is not None:
                    return self._killed(cell_id, started, out, err, calls, None, overrun)
                try:
                    reply = self._dispatcher.handle(frame, cell_id, wait_until)
                except AuditWriteError:
                    self._kill("the audit log failed; host calls stopped")
                    raise
                # a call the deadline abandoned is answered too (TimeoutError), after the
                # deadline's interrupt (a SIGINT after the answer could reach the next
                # cell): the agent's thread waiting on it holds the call lock, and the
                # cell's end waits for it (review s13d: unanswered, the session was killed
                # at the grace; before that, the session's calls hung for good)
                if wait_until.passed() and not interrupted:
                    wait_until, interrupted = self._interrupt_at(deadline, cell_id), True
                try:
                    self._send_in_cell(reply, max(wait_until.remaining(),
                                                  INTERRUPT_FRAME_WAIT_S))
                except (SandboxCrashed, ProtocolError) as exc:
                    return self._killed(cell_id, started, out, err, calls, exc)
            elif kind == "result" and frame["id"] == cell_id:
                spent = self._session_spent(deadline)
                result = self._finish(cell_id, started, frame, out, err, calls, interrupted,
                                      spent, deadline)
                if spent:   # the session's wall time ended the cell: it ends the session
                    self._kill(spent)
                    self._event("session.expired", cell=cell_id, reason=spent)
                return result
            # anything else (a stray result, a forged ready, output of another cell) is
            # ignored: it cannot end this cell or change its record

    def _interrupt_at(self, deadline: Deadline, cell_id: str) -> Deadline:
        """The cell's deadline passed: recorded, its later calls refused (as an interrupt
        does; review s13d: an llm_query pool's next calls ran in the grace and held the
        cell's end past it), the interrupt frame and SIGINT sent. Returns the grace's end."""
        self._event("limit.exceeded", cell=cell_id, limit=deadline.limit,
                    value=deadline.seconds)
        self._dispatcher.cuts.cut(deadline.limit)
        with self._send_lock:   # the frame too: the cell may not have begun
            self._signal_cell_locked(cell_id)
        grace = self.policy.limits.interrupt_grace_s
        return Deadline(time.monotonic() + grace, "interrupt_grace_s", grace)

    def _finish(self, cell_id: str, started: float, frame: Frame, out: CappedStream,
                err: CappedStream, calls: int, interrupted: bool,
                spent: str | None, deadline: Deadline) -> ExecResult:
        status: CellStatus = frame["status"]
        cap = self.policy.limits.output_bytes
        error, error_dropped = capped_error(frame.get("error"), cap)
        # a call the interrupt (or the deadline) ended reaches the cell as a TimeoutError,
        # which can beat the SIGINT: the cell was interrupted whatever it then did (review
        # s15b); a cell no cut call reached keeps the agent's word (it may have ended before
        # the SIGINT could land: review s15c)
        cuts = self._dispatcher.cuts
        reached = cuts.calls_reached > 0
        by_deadline = status in ("ok", "interrupted") or (reached and status == "error")
        if interrupted and by_deadline:
            # the deadline interrupted it; the agent's word is not needed
            status, error = "interrupted", self._interrupt_reason(deadline)
        elif (reached and cuts.interrupted and cuts.limit == INTERRUPT
              and status in ("ok", "error")):
            status, error = "interrupted", INTERRUPTED
        elif status == "error" and error is not None and "MemoryError" in error:
            error += f"\n[rlmbox: the sandbox's memory is limits.memory_mb = " \
                     f"{self.policy.limits.memory_mb}]"
        has_answer = frame.get("has_answer") is True
        answer, answer_dropped = capped_answer(frame.get("answer"), cap) if has_answer else (
            None, 0)
        agent_dropped = frame.get("dropped") or {}
        out_dropped, err_dropped = _count(agent_dropped, "stdout"), _count(agent_dropped, "stderr")
        return self._result(
            cell_id, started, status, stdout=out.text(out_dropped), stderr=err.text(err_dropped),
            error=f"{error or status}; {spent}" if spent else error, answer=answer,
            has_answer=has_answer, calls=calls,
            dropped={"stdout": out.dropped + out_dropped, "stderr": err.dropped + err_dropped,
                     "error": error_dropped, "answer": answer_dropped})

    def _interrupt_reason(self, deadline: Deadline) -> str:
        """Why the host interrupted the cell, naming the setting (measured on the host)."""
        limits = self.policy.limits
        if deadline.limit == "cell_timeout_s" and deadline.seconds < limits.cell_timeout_s:
            return (f"KeyboardInterrupt: the cell ran past its exec timeout of "
                    f"{deadline.seconds:g} s and was interrupted (the policy's "
                    f"limits.cell_timeout_s is {limits.cell_timeout_s:g} s)")
        setting = (f"limits.{deadline.limit}" if hasattr(limits, deadline.limit)
                   else deadline.limit)   # a child's: its caller's wall time (review s15c)
        return (f"KeyboardInterrupt: the cell ran past {setting} "
                f"({deadline.seconds:g} s) and was interrupted")

    def _named_limit(self, reason: str) -> str:
        """A death reason with the policy setting behind it (``limits.memory_mb = 512``)."""
        limits = self.policy.limits
        if "out of memory" in reason or "MemoryError" in reason:
            return f"{reason} (limits.memory_mb = {limits.memory_mb})"
        if "pids limit" in reason:
            return f"{reason} (limits.pids = {limits.pids})"
        return reason

    def _calls_overrun(self, calls: int, refused_before: int) -> str | None:
        """Why the cell must be killed before its next call is handled, if it must: too
        many calls, or too many audit bytes written by its refused calls."""
        if calls > MAX_CALLS_PER_CELL:
            return f"more than {MAX_CALLS_PER_CELL} host calls in one cell"
        refused = self._dispatcher.refused_audit_bytes - refused_before
        if refused > MAX_REFUSED_AUDIT_BYTES_PER_CELL:
            return (f"refused host calls wrote {refused} bytes to the audit log (more than "
                    f"{MAX_REFUSED_AUDIT_BYTES_PER_CELL} in one cell)")
        return None

    @staticmethod
    def _session_spent(deadline: Deadline) -> str | None:
        """Why the session must end with this cell, when the session's wall time ran out."""
        if deadline.limit != "session_timeout_s" or not deadline.passed():
            return None
        return f"the session's wall time (session_timeout_s, {deadline.seconds:g} s) is spent"

    def _kill(self, reason: str) -> None:
        self.sandbox.kill()
        with self._state_lock:   # a closed session died of its close, not of this
            if self._state is not SessionState.CLOSED:
                self.death_reason = reason
        self._transition(SessionState.DEAD)

    def _killed(self, cell_id: str, started: float, out: CappedStream, err: CappedStream,
                calls: int, exc: Exception | None, reason: str | None = None) -> ExecResult:
        if reason is None:
            if isinstance(exc, ProtocolError):
                reason = f"protocol violation by the sandbox: {exc}"
            else:
                reason = reason_once_dead(self.sandbox) or str(exc)
        reason = self._named_limit(reason)
        self._kill(reason)
        self._event("limit.exceeded" if "limit" in reason or "memory" in reason
                    else "sandbox.killed", cell=cell_id,
                    **text_fields("reason", reason, self._audit.redact))
        return self._result(cell_id, started, "killed", stdout=out.text(0),
                            stderr=err.text(0), error=f"SessionKilled: {reason}", calls=calls,
                            dropped={"stdout": out.dropped, "stderr": err.dropped,
                                     "error": 0, "answer": 0})

    def _result(self, cell_id: str, started: float, status: CellStatus, *, stdout: str = "",
                stderr: str = "", error: str | None = None, answer: Any = None,
                has_answer: bool = False, calls: int = 0,
                dropped: dict[str, int] | None = None) -> ExecResult:
        """Builds the result and audits it; every string in it is already within the cap."""
        dropped = dropped or {"stdout": 0, "stderr": 0, "error": 0, "answer": 0}
        result = ExecResult(status=status, stdout=stdout, stderr=stderr, error=error,
                            answer=answer, has_answer=has_answer,
                            duration_s=time.monotonic() - started, host_calls=calls,
                            truncated=any(dropped.values()), dropped=dropped, cell_id=cell_id)
        bodies = {"stdout": stdout, "stderr": stderr} if stdout or stderr else {}
        if has_answer:
            bodies["answer"] = answer_json(answer)
        # sandbox text in the error: a short redacted attribute, the whole as a body
        text = ({"error": None, "bodies": bodies or None} if error is None
                else text_fields("error", error, self._audit.redact, bodies))
        self._event("cell.result", cell=cell_id, status=status,
                    duration_s=round(result.duration_s, 6), host_calls=calls,
                    truncated=result.truncated, dropped=dropped, **text,
                    has_answer=has_answer)
        return result


def _count(dropped: Any, stream: str) -> int:
    value = dropped.get(stream, 0) if isinstance(dropped, dict) else 0
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def check_cell_timeout(policy: Policy, timeout: object) -> None:
    """A caller's timeout shortens the cell's wall time; anything else is refused by
    name (a silent cut would hide that the policy allows less than was asked). A module
    function so a session held elsewhere (on a cluster node) is checked the same way."""
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"timeout must be a number of seconds, not {timeout!r}")
    if not (math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
    limit = policy.limits.cell_timeout_s
    if timeout > limit:
        raise ValueError(f"timeout {timeout:g} s is over the policy's limits.cell_timeout_s "
                         f"({limit:g} s); the policy's operator sets that limit")
