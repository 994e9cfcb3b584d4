"""Group commit: queued records are written and fsynced in batches, checkpoints signed.

Appenders only queue; a background thread commits what is queued once the oldest of it has
waited ``flush_interval_s``: it makes the bodies durable, writes the lines (rotating by size),
fsyncs once, and then advances ``durable_seq``. The wait runs from when the queue last went
from empty to non-empty, so a caller's ``sync`` that committed the queue first leaves the
thread nothing due (no second fsync for a caller to queue behind), and no record waits
longer than the interval either way. A ``sync()`` that finds no batch being committed
commits the queue itself, on its own thread, rather than waking the background thread and
waiting to be woken in turn (two thread hand-offs per durable cell); one batch is committed
at a time either way, in queue order. The background thread is woken only from a park
(nothing queued, no due time) when the queue fills, or for backpressure or close; after a
caller commits the batch first, the thread stays asleep to that batch's due time instead
of parking, so the caller refilling the queue wakes nobody (what it queues is due later
than that wait ends). While records keep coming (one was queued within the interval) it
stays armed another interval instead of parking when it finds nothing to commit, so a
busy caller syncing its own records (a host call's start record) never wakes it; it parks
once a whole interval passed with nothing queued. A cell synced by its caller so costs no
wake-up of this thread, where it cost two. A failed write or fsync is final: the writer
records the error and stops, and everybody waiting or arriving later gets
``AuditWriteError``. An fsync is never retried, because after a failed fsync the kernel may
have dropped the dirty pages and a second fsync can succeed without them.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from rlmbox.audit.bodies import BodyStore, fsync_dir, write_all
from rlmbox.audit.canonical import record_digest, rfc3339_now
from rlmbox.audit.checkpoint import Signer, make_checkpoint_line
from rlmbox.audit.files import CHECKPOINTS, CURRENT, next_rotated_name, open_regular
from rlmbox.errors import AuditError, AuditWriteError

_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND


class GroupCommitWriter:
    """Owns the log file descriptors; one instance per open log."""

    def __init__(self, directory: Path, *, bodies: BodyStore, signer: Signer,
                 head_seq: int, head_digest: str, checkpoint_seq: int, checkpoint_digest: str,
                 checkpoint_every: int, max_file_bytes: int, flush_interval_s: float,
                 max_pending_bytes: int = 64 * 1024 * 1024) -> None:
        self._directory = directory
        self._bodies = bodies
        self._signer = signer
        self._checkpoint_every = max(1, checkpoint_every)
        self._max_file_bytes = max_file_bytes
        self._flush_interval = _checked_interval(flush_interval_s)
        self._max_pending = max_pending_bytes
        # Appenders take the bare lock (a C context manager; the Condition's is Python).
        self._mutex = threading.Lock()
        self._work = threading.Condition(self._mutex)      # the background thread waits here
        self._durable = threading.Condition(self._mutex)   # sync() and backpressure wait here
        self._parked = False   # the background thread waits with nothing due (no timeout)
        self._waiting_idle = False   # ... or for one interval, records still coming
        self._lines: list[bytes] = []   # record lines without their newline
        self._pending_bytes = 0
        self._pending_bodies: dict[str, bytes] = {}
        self._queued_seq = head_seq
        self._queued_digest = head_digest
        self.durable_seq = head_seq
        self._durable_digest = head_digest
        self._checkpoint_seq = checkpoint_seq
        self._checkpoint_digest = checkpoint_digest
        self._kicked = False
        self._pending_since = 0.0   # time.monotonic() when the queue went non-empty
        self._closing = False
        self._committing = False   # a batch is being written (by either thread)
        self.failure: BaseException | None = None
        self._fd = open_regular(directory / CURRENT, _OPEN_FLAGS)
        self._size = os.fstat(self._fd).st_size
        try:
            self._cp_fd = open_regular(directory / CHECKPOINTS, _OPEN_FLAGS)
        except BaseException:
            os.close(self._fd)
            raise
        fsync_dir(directory)
        self._thread = threading.Thread(target=self._serve, name="rlmbox-audit-writer",
                                        daemon=True)
        self._thread.start()

    # -- called by appenders -------------------------------------------------------------

    def stage_body(self, digest: str, data: bytes) -> None:
        """Queue a body; it is durable before any record queued after it."""
        with self._mutex:
            self._raise_if_failed()
            if digest not in self._pending_bodies:   # counted once, as it is written once
                self._mark_pending()
                self._pending_bodies[digest] = data
                self._pending_bytes += len(data)

    def submit(self, line: bytes, seq: int, digest: str) -> None:
        """Queue one record line; blocks while too much is queued (backpressure)."""
        with self._mutex:
            while self._pending_bytes > self._max_pending and self.failure is None:
                self._kicked = True
                self._work.notify()
                self._durable.wait()
            if self.failure is not None:
                self._raise_if_failed()
            try:
                if not self._lines:
                    self._mark_pending()
                self._lines.append(line)
                self._pending_bytes += len(line) + 1
                self._queued_seq, self._queued_digest = seq, digest
            except BaseException as exc:   # a signal mid-queue: the queue may hold it or
                self.failure = exc          # not, so the log fails closed rather than guess
                raise

    def queued_head(self) -> tuple[int, str]:
        """``seq`` and digest of the last record queued: the one the next record links to.
        The chain's head lives here, set in the same step that queues its record, so no
        interrupt can leave the two apart (a record queued twice under one seq, or a seq
        skipped); the log reads it under its own lock, the only place ``submit`` runs."""
        return self._queued_seq, self._queued_digest

    def _mark_pending(self) -> None:
        """Called under the lock before queueing: an empty queue starts its interval."""
        if not self._lines and not self._pending_bodies:
            self._pending_since = time.monotonic()
            if self._parked:
                self._work.notify()

    def sync(self) -> None:
        """Block until everything queued so far is durable."""
        with self._mutex:
            target = self._queued_seq
            while self.durable_seq < target and self.failure is None:
                if not self._committing and not self._closing:
                    self._commit_queue_locked()
                    continue
                # a batch is being committed; whoever ends it wakes us, and we commit the
                # rest ourselves (or close() flushes it)
                self._durable.wait()
            self._raise_if_failed()

    def close(self) -> None:
        """Flush, write a final checkpoint, stop the thread and close the files."""
        with self._mutex:
            self._closing = True
            self._work.notify()
        self._thread.join()
        with self._mutex:
            while self._committing:   # a sync() committing on its own thread
                self._durable.wait()
        try:
            if self.failure is None and self._checkpoint_seq < self.durable_seq:
                try:
                    self._write_checkpoint()
                except OSError as exc:
                    self.failure = exc
        finally:
            for fd in (self._fd, self._cp_fd):
                if fd >= 0:
                    os.close(fd)
            self._bodies.close()
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self.failure is not None:
            raise AuditWriteError(
                f"the audit log failed earlier and refuses further writes: {self.failure}"
            ) from self.failure

    # -- the writer thread ---------------------------------------------------------------

    def _serve(self) -> None:
        """The thread's body: whatever ends it early fails the log closed, so a record it
        would have committed is refused at ``sync`` and ``close``, never silently lost."""
        try:
            self._run()
        except BaseException as exc:
            with self._mutex:
                if self.failure is None:
                    self.failure = exc
                self._durable.notify_all()
            raise

    def _run(self) -> None:
        armed_until = 0.0   # this thread's next wake-up without being notified
        with self._mutex:
            while True:
                queued = bool(self._lines or self._pending_bodies)
                if self._closing and not queued:
                    return
                now = time.monotonic()
                if not queued and armed_until > now:
                    # a caller committed the batch first: stay armed to its due time
                    # rather than park, so refilling the queue needs no wake-up (what is
                    # queued now is due no sooner than this wait ends)
                    self._work.wait(armed_until - now)
                    continue
                if not queued or self._committing:
                    # nothing queued, or a caller is committing (it wakes this thread if it
                    # leaves records behind)
                    if now - self._pending_since < self._flush_interval:
                        # busy: records keep coming (and their callers commit them): stay
                        # armed one more interval, so the next record needs no wake-up
                        armed_until = now + self._flush_interval
                        self._idle_wait(self._flush_interval)
                        continue
                    self._park()
                    armed_until = self._pending_since + self._flush_interval
                    continue
                due_at = self._pending_since + self._flush_interval
                if not self._kicked and not self._closing and due_at > now:
                    armed_until = due_at   # let the batch gather until its oldest is due
                    self._work.wait(due_at - now)
                    continue
                if self._commit_queue_locked() is not None:
                    return

    def _park(self) -> None:
        """Wait with no timeout until notified: the queue filled, close, or backpressure."""
        self._parked = True
        try:
            self._work.wait()
        finally:
            self._parked = False

    def _idle_wait(self, seconds: float) -> None:
        """Wait ``seconds`` with nothing due: a record queued meanwhile is due no sooner
        than this wait ends, so appenders need not wake it; a caller's commit that leaves
        records behind does (as a park's)."""
        self._waiting_idle = True
        try:
            self._work.wait(seconds)
        finally:
            self._waiting_idle = False

    def _commit_queue_locked(self) -> BaseException | None:
        """Commit everything queued; called with the lock held, released during the I/O.

        Returns the failure that ended the log (also kept in ``failure``), or ``None``.
        Once the log has failed nothing more is written: what was queued while the failing
        batch was written chains after records that never became durable.
        """
        if self.failure is not None:
            return self.failure
        self._kicked = False
        lines, bodies = self._lines, self._pending_bodies
        last_seq, last_digest = self._queued_seq, self._queued_digest
        self._lines, self._pending_bodies = [], {}
        self._committing = True
        self._mutex.release()
        interrupted: BaseException | None = None
        try:
            self._commit(lines, bodies, last_seq, last_digest)
        except (OSError, AuditError) as exc:   # AuditError: an odd file where one is made
            failure: BaseException | None = exc
        except BaseException as exc:
            # a KeyboardInterrupt in a caller's sync() mid-write: the batch is neither
            # durable nor queued any more, so the log fails closed rather than go on
            # past a gap in the chain
            failure = interrupted = exc
        else:
            failure = None
        finally:
            late = self._retake_lock()
            self._committing = False
            interrupted = interrupted or late
        if failure is not None:
            self.failure = failure
        else:
            self._pending_bytes = max(0, self._pending_bytes - sum(map(len, lines)) - len(lines)
                                      - sum(map(len, bodies.values())))
            self.durable_seq, self._durable_digest = last_seq, last_digest
        self._durable.notify_all()
        if (self._parked or self._waiting_idle) and (self._lines or self._pending_bodies):
            self._work.notify()   # queued while this batch was written
        if interrupted is not None:
            raise interrupted
        return failure

    def _retake_lock(self) -> BaseException | None:
        """Takes the lock back after a batch's I/O, whatever interrupts the wait for it (a
        signal handler raising there would otherwise leave ``_committing`` set for good, and
        every later sync and close waiting on it); returns what interrupted, to re-raise."""
        late: BaseException | None = None
        while True:
            try:
                self._mutex.acquire()
            except BaseException as exc:
                late = late or exc
            else:
                return late

    def _commit(self, lines: list[bytes], bodies: dict[str, bytes], last_seq: int,
                last_digest: str) -> None:
        if bodies:
            self._bodies.write_durably(bodies)
        if not lines:
            return
        chunk: list[bytes] = []
        chunk_bytes = 0
        for line in lines:
            if self._size + chunk_bytes + len(line) + 1 > self._max_file_bytes and (
                    self._size + chunk_bytes) > 0:
                self._write(chunk)
                chunk, chunk_bytes = [], 0
                self._rotate()
            chunk.append(line)
            chunk_bytes += len(line) + 1
        self._write(chunk)
        os.fsync(self._fd)
        if last_seq - self._checkpoint_seq >= self._checkpoint_every:
            self._write_checkpoint(last_seq, last_digest)

    def _write(self, chunk: list[bytes]) -> None:
        if chunk:
            chunk.append(b"")   # each line ends with a newline, the last one too
            data = b"\n".join(chunk)
            write_all(self._fd, data)
            self._size += len(data)

    def _rotate(self) -> None:
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1
        os.rename(self._directory / CURRENT, next_rotated_name(self._directory))
        self._fd = open_regular(self._directory / CURRENT, _OPEN_FLAGS)
        self._size = 0
        fsync_dir(self._directory)

    def _write_checkpoint(self, seq: int | None = None, digest: str | None = None) -> None:
        seq = self.durable_seq if seq is None else seq
        digest = self._durable_digest if digest is None else digest
        line = make_checkpoint_line(self._signer, seq=seq, head=digest,
                                    prev=self._checkpoint_digest, ts=rfc3339_now())
        write_all(self._cp_fd, line + b"\n")
        os.fsync(self._cp_fd)
        self._checkpoint_seq, self._checkpoint_digest = seq, record_digest(line)


#: The longest wait between background commits: ``threading`` refuses longer timeouts, and an
#: interval of a day is already "only sync() and close() commit".
MAX_FLUSH_INTERVAL_S = 86400.0


def _checked_interval(seconds: float) -> float:
    """``flush_interval_s`` as the writer waits it: a number of seconds, at least 0 (NaN and
    negatives refused), at most ``MAX_FLUSH_INTERVAL_S`` (``inf`` included)."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds >= 0:
        raise ValueError(f"flush_interval_s must be a number of seconds >= 0, not {seconds!r}")
    return float(min(seconds, MAX_FLUSH_INTERVAL_S))   # an int past float's range too
