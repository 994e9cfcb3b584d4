"""Review s14c: hostile tests of the chain's head kept by the writer (5acbedf), the
redactor's number spellings and the writer thread failing closed (1d3a664).

A strict xfail marks a break found; the rest are attacks that held, kept as regressions.
"""

from __future__ import annotations

import decimal
import enum
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from rlmbox.audit.canonical import record_digest
from rlmbox.audit.files import log_files
from rlmbox.audit.log import AuditLog
from rlmbox.audit.verify import verify_log
from rlmbox.audit.writer import GroupCommitWriter
from rlmbox.errors import AuditRecordInvalid, AuditWriteError

CARD = "4111111111111111"


class _ReprFloat(float):
    def __repr__(self) -> str:
        return "1.5"

    __str__ = __repr__


class _ReprInt(int):
    def __repr__(self) -> str:
        return "7"

    __str__ = __repr__


class _Card(enum.IntEnum):
    VISA = 4111111111111111


class _Index:
    def __index__(self) -> int:
        return 4111111111111111


# (id, secret, value): a number whose JSON spelling holds the secret
_NUMBERS: list[tuple[str, str, Any]] = [
    ("float-subclass-repr", CARD, _ReprFloat(4111111111111111.0)),
    ("int-subclass-repr", CARD, _ReprInt(4111111111111111)),
    ("int-enum-nested", CARD, {"a": [_Card.VISA]}),
    ("float-exponent-digits", "2345678901234568", 1234567890123456789.0),
    ("negative-int", CARD, -4111111111111111),
    ("float-fraction", "1111", 0.41111),
    ("big-int-over-64-bits", CARD, int("9" + CARD * 4)),
]


@pytest.mark.parametrize(("secret", "value"),
                         [pytest.param(s, v, id=i) for i, s, v in _NUMBERS])
def test_a_number_spelling_a_secret_never_reaches_disk(logdir: Path, secret: str,
                                                       value: Any) -> None:
    with AuditLog(logdir, secrets=(secret,)) as log:
        record = log.append("x.attack", v=value)
        log.sync()
        line = log.path.read_bytes().splitlines()[-1]
    assert secret.encode() not in line
    assert b"[REDACTED]" in line
    written = json.loads(line)
    assert written == json.loads(json.dumps(record))
    assert verify_log(logdir).ok


@pytest.mark.parametrize("value", [decimal.Decimal(CARD), _Index(), complex(1, 2)],
                         ids=["decimal", "index-only", "complex"])
def test_a_number_that_is_no_json_number_is_refused_as_invalid(logdir: Path,
                                                              value: Any) -> None:
    with AuditLog(logdir, secrets=(CARD,)) as log:
        with pytest.raises(AuditRecordInvalid):
            log.append("x.attack", v=value)
        assert log.append("x.after")["seq"] == 1
    assert CARD.encode() not in log.path.read_bytes()


@pytest.mark.parametrize("secrets", [(), (CARD,)], ids=["no-secret", "secret"])
@pytest.mark.parametrize("value", [10 ** 5000, -(10 ** 5000), [[10 ** 5000]]],
                         ids=["int", "negative", "nested"])
def test_an_int_too_long_to_write_is_invalid_on_both_paths(
        logdir: Path, secrets: tuple[str, ...], value: Any) -> None:
    with AuditLog(logdir, secrets=secrets) as log:
        with pytest.raises(AuditRecordInvalid):
            log.append("x.attack", n=value)
        assert log.append("x.after")["seq"] == 1
    assert verify_log(logdir).ok


def test_a_bool_is_written_as_json_true_whatever_secret_is_a_digit(logdir: Path) -> None:
    with AuditLog(logdir, secrets=("1",)) as log:
        record = log.append("x.attack", flag=True, n=1)
        log.sync()
        written = json.loads(log.path.read_bytes().splitlines()[-1])
    assert written["flag"] is True
    assert record["flag"] is True
    assert written["n"] == "[REDACTED]"


# -- the chain's head ------------------------------------------------------------------------


def test_synced_head_under_concurrent_appends_is_a_durable_record_of_the_chain(
        logdir: Path) -> None:
    """Appenders on both paths race ``synced_head``: each head it returns is a record in
    the file with that seq and digest, durable when it returns, and never goes back."""
    heads: list[tuple[int, str]] = []
    stop = threading.Event()
    with AuditLog(logdir, secrets=("s3cr3t",), flush_interval_s=0.001) as log:
        def appender(k: int) -> None:
            i = 0
            while not stop.is_set():
                log.append("x.race", k=k, i=i, v="s3cr3t" if i % 3 == 0 else "plain")
                i += 1

        threads = [threading.Thread(target=appender, args=(k,)) for k in range(3)]
        for thread in threads:
            thread.start()
        try:
            for _ in range(200):
                seq, digest = log.synced_head()
                assert log.durable_seq >= seq
                heads.append((seq, digest))
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        log.sync()
    lines = [line for path in log_files(logdir) for line in path.read_bytes().splitlines()]
    by_seq = {json.loads(line)["seq"]: record_digest(line) for line in lines}
    assert sorted(by_seq) == list(range(1, len(lines) + 1))
    for seq, digest in heads:
        assert by_seq[seq] == digest
    assert [s for s, _ in heads] == sorted(s for s, _ in heads)
    assert verify_log(logdir).ok


def test_synced_head_of_a_fresh_and_a_reopened_log(logdir: Path) -> None:
    with AuditLog(logdir) as log:
        assert log.synced_head()[0] == 0
        log.append("x.one")
        head = log.synced_head()
    with AuditLog(logdir) as log:
        assert log.synced_head() == head
        assert log.append("x.two")["prev"] == head[1]


# -- the writer thread ending early --------------------------------------------------------


class _Boom(Exception):
    pass


def _kill_thread_in(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    original = getattr(GroupCommitWriter, name)

    def dying(self: GroupCommitWriter, *args: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name == "rlmbox-audit-writer":
            raise _Boom(f"the writer thread dies in {name}")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(GroupCommitWriter, name, dying)


def _bounded(call: Any, limit: float = 10.0) -> BaseException | None:
    box: dict[str, BaseException | None] = {}

    def run() -> None:
        try:
            call()
            box["exc"] = None
        except BaseException as exc:   # judged by the caller
            box["exc"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"{call} still running after {limit} s"
    return box["exc"]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("where", ["_park", "_idle_wait", "_commit_queue_locked"])
def test_a_writer_thread_dying_fails_the_log_closed_without_a_hang(
        logdir: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """The thread dies wherever it next goes (parked, idle, committing) while records keep
    coming: appends, ``sync`` and ``close`` are refused promptly, none hangs or says OK."""
    log = AuditLog(logdir, flush_interval_s=0.005)
    log.append("x.zero")
    log.sync()
    _kill_thread_in(monkeypatch, where)
    with log._writer._mutex:
        log._writer._work.notify()
    returned: list[int] = []
    try:
        deadline = time.monotonic() + 10
        refused = False
        while time.monotonic() < deadline and not refused:
            try:
                returned.append(log.append("x.more")["seq"])
                if where == "_idle_wait":   # a busy caller commits: the thread idles
                    log.sync()
            except AuditWriteError:
                refused = True
            time.sleep(0.002)
        assert refused, "the log took appends for 10 s after its thread died"
        assert not log._writer._thread.is_alive()
        assert isinstance(_bounded(log.sync), AuditWriteError)
    finally:
        exc = _bounded(log.close)
    assert isinstance(exc, AuditWriteError)
    lines = log.path.read_bytes().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == list(range(1, len(lines) + 1))
    assert returned == list(range(2, len(returned) + 2))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_writer_thread_dying_releases_a_caller_held_by_backpressure(
        logdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = AuditLog(logdir, flush_interval_s=86400.0)
    log._writer._max_pending = 1   # every second record waits for room
    _kill_thread_in(monkeypatch, "_commit_queue_locked")
    try:
        log.append("x.one")
        exc = _bounded(lambda: log.append("x.two"))
        assert isinstance(exc, AuditWriteError)
    finally:
        assert isinstance(_bounded(log.close), AuditWriteError)


# -- breaks ----------------------------------------------------------------------------------


class _Opaque(str):
    """A host-side text type whose ``in`` answers False (a case-insensitive or lazily
    decoded text might): only the host's own code can pass one (the sandbox's values come
    as JSON), so this is a weak break; the line screen sees the secret in the JSON line,
    the full walk asks ``secret in value`` and believes it."""

    def __contains__(self, other: object) -> bool:
        return False


@pytest.mark.parametrize("where", ["value", "key"])
def test_a_str_subclass_hiding_a_secret_from_in_is_still_redacted(logdir: Path,
                                                                  where: str) -> None:
    hidden = "tok-s3cr3t-value"
    text = _Opaque(f"xx {hidden} yy")
    with AuditLog(logdir, secrets=(hidden,)) as log:
        log.append("x.attack", v=text if where == "value" else {text: 1})
        log.sync()
        assert hidden.encode() not in log.path.read_bytes()


def test_a_flush_interval_of_an_int_too_large_for_a_float_is_a_day(logdir: Path) -> None:
    with AuditLog(logdir, flush_interval_s=10 ** 400) as log:
        assert log._writer._flush_interval == 86400.0


def test_a_flush_interval_above_a_day_is_a_day(logdir: Path) -> None:
    for seconds in (10 ** 30, 1e300, float("inf"), 86401):
        with AuditLog(logdir, flush_interval_s=seconds) as log:
            assert log._writer._flush_interval == 86400.0
            log.append("x.one")
            assert isinstance(_bounded(log.sync, 5.0), type(None))


def _in_forked_child(log: AuditLog, call: Any, *, lock_held: bool) -> int:
    """Runs ``call(log)`` in a forked child (the parent holding the log's lock at the fork,
    as a thread appending then would): 0 if refused with AuditWriteError, 1 if it returned,
    2 another exception, -SIGALRM (-14) or -SIGKILL if it hung."""
    import os
    import signal

    if lock_held:
        log._lock.acquire()
    try:
        pid = os.fork()
        if pid == 0:   # the child
            code = 2
            try:
                signal.signal(signal.SIGALRM, signal.SIG_DFL)   # a hang ends the child
                signal.alarm(5)
                call(log)
                code = 1
            except AuditWriteError:
                code = 0
            except BaseException:
                code = 2
            os._exit(code)
    finally:
        if lock_held:
            log._lock.release()
    deadline = time.monotonic() + 15
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        time.sleep(0.02)


@pytest.mark.parametrize(("call", "expected"), [
    pytest.param(lambda log: log.append("x.child"), 0, id="append"),
    pytest.param(lambda log: log.sync(), 0, id="sync"),
    # close in the child returns quietly: the log is the parent's to close
    pytest.param(lambda log: log.close(), 1, id="close"),
])
def test_a_forked_child_is_refused_promptly_even_with_the_lock_held_at_the_fork(
        logdir: Path, call: Any, expected: int) -> None:
    with AuditLog(logdir) as log:
        log.append("x.one")
        code = _in_forked_child(log, call, lock_held=True)
    assert code == expected, f"the child ended with {code} (-14: hung until SIGALRM)"


def test_synced_head_in_a_forked_child_without_the_lock_held_is_refused(logdir: Path) -> None:
    with AuditLog(logdir) as log:
        log.append("x.one")
        assert _in_forked_child(log, AuditLog.synced_head, lock_held=False) == 0


def test_synced_head_in_a_forked_child_with_the_lock_held_at_the_fork_is_refused(
        logdir: Path) -> None:
    with AuditLog(logdir) as log:
        log.append("x.one")
        code = _in_forked_child(log, AuditLog.synced_head, lock_held=True)
    assert code == 0, f"the child's synced_head ended with {code} (-14: hung until SIGALRM)"


def _self_list() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


def _self_dict() -> dict[str, Any]:
    loop: dict[str, Any] = {}
    loop["me"] = loop
    return loop


@pytest.mark.parametrize("secrets", [(), ("s3cr3t",)], ids=["screened", "full-walk"])
@pytest.mark.parametrize("value", [_self_list(), _self_dict(), b"bytes", {1: "int-key"},
                                   float("nan"), [float("-inf")], {"k": {"s3cr3t"}}],
                         ids=["self-list", "self-dict", "bytes", "int-key", "nan",
                              "nested-inf", "set"])
def test_an_unrecordable_value_is_audit_record_invalid_and_takes_no_seq(
        logdir: Path, secrets: tuple[str, ...], value: Any) -> None:
    with AuditLog(logdir, secrets=secrets) as log:
        log.append("x.one")
        with pytest.raises(AuditRecordInvalid):
            log.append("x.attack", v=value, w="s3cr3t")
        assert log.append("x.after")["seq"] == 2
    assert verify_log(logdir).ok


def _append_armed(log: AuditLog, armed: list[bool], returned: dict[int, str],
                  seconds: float) -> bool:
    """Appends for ``seconds`` with the SIGINT handler armed in each; True if the log
    failed closed."""
    end = time.monotonic() + seconds
    i = 0
    try:
        while time.monotonic() < end:
            try:
                armed[0] = True
                record = log.append("x.storm", v="s3cr3t" if i % 2 else "plain",
                                    bodies={"b": f"body {i}"} if i % 5 == 0 else None)
                armed[0] = False
                returned[record["seq"]] = record["prev"]
                i += 1
            except KeyboardInterrupt:
                pass
            except AuditWriteError:
                return True
        return False
    finally:
        armed[0] = False


def test_a_sigint_storm_over_appends_leaves_a_whole_chain_or_a_log_failed_closed(
        logdir: Path) -> None:
    """Real SIGINTs every ~30 us while the main thread appends on both paths (bodies,
    secrets): the handler raises only inside an append. Whatever happens the file is one
    chain from seq 1, every record an append returned is in it as returned, and a log
    that failed says so at close."""
    import signal

    armed = [False]

    def handler(signum: int, frame: Any) -> None:
        if armed[0]:
            armed[0] = False
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    main = threading.main_thread().ident
    assert main == threading.get_ident()
    stop = threading.Event()

    def storm() -> None:
        while not stop.is_set():
            signal.pthread_kill(main, signal.SIGINT)
            time.sleep(0.00003)

    returned: dict[int, str] = {}
    failed = False
    log = AuditLog(logdir, secrets=("s3cr3t",), flush_interval_s=0.0005)
    stormer = threading.Thread(target=storm, daemon=True)
    stormer.start()
    try:
        failed = _append_armed(log, armed, returned, 2.0)
    finally:
        stop.set()
        stormer.join()
        signal.signal(signal.SIGINT, previous)
        try:
            log.close()
        except AuditWriteError:
            failed = True
    lines = [json.loads(line) for path in log_files(logdir)
             for line in path.read_bytes().splitlines()]
    assert [line["seq"] for line in lines] == list(range(1, len(lines) + 1))
    assert verify_log(logdir).ok
    on_disk = {line["seq"]: line["prev"] for line in lines}
    assert len(returned) > 10
    for seq, prev in returned.items():
        if failed and seq not in on_disk:
            continue   # queued when the log failed: refused at close, never claimed durable
        assert on_disk[seq] == prev
