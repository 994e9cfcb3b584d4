"""Review s14b: hostile tests of the append path's line screen (6793dc4, 200b398), the record
built in the call's own ``**attributes`` (0f45245) and the group-commit writer's armed wait
(5f6183d).

A strict xfail marks a break found; the rest are attacks that held, kept as regressions.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import json
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from rlmbox.audit.log import AuditLog, default_severity
from rlmbox.audit.processors import Canonicalize, Chain, Processor, RedactSecrets, run_chain
from rlmbox.audit.redact import Redactor
from rlmbox.audit.verify import verify_log
from rlmbox.errors import AuditRecordInvalid, AuditWriteError

# -- helpers -----------------------------------------------------------------------------


def _lines(log: AuditLog) -> list[bytes]:
    return log.path.read_bytes().splitlines()


def _full_chain(secrets: tuple[str, ...], attributes: dict[str, Any], seq: int,
                head: str) -> dict[str, Any]:
    """What the full processor chain (redact every string, then chain) makes of it."""
    event = {**attributes, "event": "x.attack", "session": None, "parent": None,
             "depth": 0, "tenant": None,
             "severity": default_severity("x.attack", attributes)}
    processors: list[Processor] = [RedactSecrets(Redactor(secrets)), Canonicalize(),
                                   Chain(seq, head)]
    record: dict[str, Any] = run_chain(processors, event).record
    return record


def _append_and_compare(logdir: Path, secrets: tuple[str, ...],
                        attributes: dict[str, Any]) -> bytes:
    """Appends through the log and checks record == line == the full chain; returns the
    bytes of the whole log file."""
    log = AuditLog(logdir, secrets=secrets)
    try:
        log.append("x.before")
        record = log.append("x.attack", **attributes)
        log.sync()
        raw = log.path.read_bytes()
        written = json.loads(raw.splitlines()[-1])
    finally:
        log.close()
    expected = _full_chain(secrets, attributes, record["seq"] - 1, record["prev"])
    for kept in (record, written, expected):
        kept.pop("ts")
    assert record == written == expected
    assert verify_log(logdir).ok
    return raw


# -- the line screen vs the full chain: spellings of a secret ------------------------------

_SECRET_CASES: list[tuple[str, str, dict[str, Any]]] = [
    # (id, secret, attributes)
    ("in-a-key", "k3y-s3cr3t", {"meta": {"k3y-s3cr3t": 1}}),
    ("key-and-value", "split-secret", {"split-": "secret", "x": "split-secret"}),
    ("all-digit-int", "4111111111111111", {"card": [[4111111111111111]]}),
    ("int-inside-digits", "1111", {"n": 9911119}),
    ("float-exponent", "1e-05", {"f": [1e-05]}),
    ("float-repr", "0.1", {"f": 0.1}),
    ("float-large", "1e+22", {"f": 1e22}),
    ("negative", "-42", {"n": -42}),
    ("u2028", "ab\u2028cd", {"v": "xxab\u2028cdxx"}),
    ("u2029-in-key", "q\u2029r", {"q\u2029r": "v"}),
    ("nul", "nu\x00ll", {"v": "nu\x00ll"}),
    ("del", "d\x7fel", {"v": "d\x7fel"}),
    ("quote", 'q"uote', {"v": 'a q"uote b'}),
    ("backslash", "b\\s", {"v": "a b\\s b"}),
    ("json-escaped-form-in-text", 'q"uote', {"v": 'text q\\"uote'}),
    ("non-ascii", "s\u00e9cr\u00e8t", {"v": "le s\u00e9cr\u00e8t ici"}),
    ("astral", "k\U0001f511y", {"v": ["k\U0001f511y"]}),
    ("ascii-escape-form-of-non-ascii", "s\u00e9c", {"v": "s\\u00e9c"}),
    ("surrogate-in-secret", "sur\ud800rogate", {"v": "x sur\ud800rogate y"}),
    ("long-string-tail", "tail-secret-99", {"v": "a" * 200_000 + "tail-secret-99"}),
    ("deep", "deep-s", {"v": [[[[[[[[{"d": ["deep-s"]}]]]]]]]]}),
    ("tuple", "tup-s", {"v": ("tup-s", 1)}),
    ("bool-text", "true", {"flag": True, "v": "true"}),
    ("null-text", "null", {"v": None, "w": "null"}),
    ("spans-structure", '":"', {"a": "b"}),
    ("chain-field-like", "prev", {"v": "prev"}),
]


@pytest.mark.parametrize(("secret", "attributes"),
                         [pytest.param(s, a, id=i) for i, s, a in _SECRET_CASES])
def test_a_secret_spelled_any_way_never_reaches_disk_and_the_line_is_the_full_chains(
        logdir: Path, secret: str, attributes: dict[str, Any]) -> None:
    raw = _append_and_compare(logdir, (secret,), attributes)
    if secret not in ("true", "null", '":"', "prev"):   # JSON's own spellings, not strings
        assert secret.encode("utf-8", "surrogatepass") not in raw


_PATTERN_CASES: list[tuple[str, dict[str, Any]]] = [
    ("sk-in-key", {"meta": {"sk-" + "A" * 24: 1}}),
    ("bearer-ideographic-space", {"v": "Bearer\u3000" + "t" * 20}),
    ("bearer-u2028", {"v": "BEARER\u2028" + "t" * 20}),
    ("bearer-nbsp-in-key", {"bearer\u00a0" + "t" * 20: 0}),
    ("akia-in-list", {"v": [["AKIA" + "B" * 16]]}),
    ("ghp", {"v": "ghp_" + "a" * 36}),
    ("github-pat", {"v": "github_pat_" + "a" * 22}),
    ("after-long-ascii", {"v": "z" * 100_000 + " sk-ant-" + "a" * 20}),
]


@pytest.mark.parametrize("attributes", [pytest.param(a, id=i) for i, a in _PATTERN_CASES])
def test_a_credential_pattern_the_line_screen_sees_is_redacted_as_the_full_chain_does(
        logdir: Path, attributes: dict[str, Any]) -> None:
    raw = _append_and_compare(logdir, (), attributes)
    assert b"[REDACTED]" in raw


def test_a_secret_added_from_another_thread_is_redacted_from_every_append_begun_after(
        logdir: Path) -> None:
    """``add_secret`` racing appends: an append begun after ``add_secret`` returned (the
    flag set after it) never writes the secret, whether the screen saw the old or the new
    secret list; none of the racing records breaks the chain."""
    secret = "raced-secret-55"   # noqa: S105 - a test value
    log = AuditLog(logdir, flush_interval_s=0.001)
    added = threading.Event()
    stop = threading.Event()
    after: list[int] = []
    errors: list[BaseException] = []

    def appender() -> None:
        try:
            while not stop.is_set():
                begun_after = added.is_set()
                record = log.append("x.race", v=f"<{secret}>", n=[secret])
                if begun_after:
                    after.append(record["seq"])
        except BaseException as exc:   # reported below
            errors.append(exc)

    threads = [threading.Thread(target=appender) for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)
    log.add_secret(secret)
    added.set()
    deadline = time.monotonic() + 10
    while len(after) < 300 and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    for thread in threads:
        thread.join()
    log.close()
    assert not errors
    assert len(after) >= 300
    records = {r["seq"]: r for r in map(json.loads, log.path.read_bytes().splitlines())}
    for seq in after:
        assert secret not in json.dumps(records[seq], ensure_ascii=False)
    assert verify_log(logdir).ok


# -- the record built in the call's own **attributes ---------------------------------------


def test_the_callers_dict_is_neither_changed_nor_aliased_by_append(logdir: Path) -> None:
    nested = [1, {"a": [2]}]
    mine: dict[str, Any] = {"items": nested, "name": "x", "f": 0.5}
    before = json.dumps(mine)
    with AuditLog(logdir) as log:
        record = log.append("x.alias", **mine)
        assert json.dumps(mine) == before          # no seq/ts/prev/event stamped in it
        assert record is not mine
        assert record["items"] is not nested
        assert record["items"][1] is not nested[1]
        nested.append(3)
        nested[1]["a"].append(4)                   # type: ignore[index]
        record["items"].append("changed after")    # the returned copy is the caller's now
        log.sync()
        written = json.loads(_lines(log)[-1])
    assert written["items"] == [1, {"a": [2]}]


def test_the_record_returned_on_the_fast_path_is_the_line_written(logdir: Path) -> None:
    class Level(enum.IntEnum):
        HIGH = 3

    class Kind(enum.StrEnum):
        A = "a-kind"

    with AuditLog(logdir) as log:
        record = log.append("x.types", level=Level.HIGH, kind=Kind.A, t=(1, (2,)),
                            big=2 ** 70, f=1e-07, u="\u2028")
        log.sync()
        written = json.loads(_lines(log)[-1])
    assert json.loads(json.dumps(record)) == written


def test_a_refused_record_takes_no_seq_on_either_path(logdir: Path) -> None:
    with AuditLog(logdir, secrets=["sec-1"]) as log:
        log.append("x.one")
        for bad in ({"v": float("nan")}, {"v": [float("inf")]}, {"v": object()},
                    {"v": "sec-1", "w": {1: 2}}, {"v": "lone \ud800"}):
            with pytest.raises(AuditRecordInvalid):
                log.append("x.bad", **bad)
        record = log.append("x.two")
    assert record["seq"] == 2
    assert verify_log(logdir).ok


def test_a_huge_integer_is_refused_as_audit_record_invalid(logdir: Path) -> None:
    with AuditLog(logdir) as log, pytest.raises(AuditRecordInvalid):
        log.append("x.big", n=10 ** 5000)


def test_an_int_enum_member_spelling_a_secret_is_redacted(logdir: Path) -> None:
    class Code(int, enum.Enum):
        CARD = 4111111111111111

    with AuditLog(logdir, secrets=["4111111111111111"]) as log:
        log.append("x.enum", code=Code.CARD)
    assert b"4111111111111111" not in log.path.read_bytes()


@pytest.mark.parametrize("pattern", [r"^pin-[0-9]{4}$", r"\Apin-[0-9]{4}", r"pin-[0-9]{4}\Z"])
def test_a_configured_anchored_pattern_is_applied_as_the_full_chain_applies_it(
        logdir: Path, pattern: str) -> None:
    assert Redactor((), [pattern]).text("pin-1234") == "[REDACTED]"
    with AuditLog(logdir, patterns=[pattern]) as log:
        routed = log.append("x.pin", v="pin-1234", w="c:\\path")   # a backslash: full chain
        record = log.append("x.pin", v="pin-1234")
    assert routed["v"] == "[REDACTED]"
    assert record["v"] == "[REDACTED]"
    assert b"pin-1234" not in log.path.read_bytes()


def test_a_partial_calling_append_twice_with_the_same_keywords_is_not_stamped(
        logdir: Path) -> None:
    """The record is built in append's ``**attributes``: a fresh dict even when the caller
    hands the same keywords dict each time (``functools.partial``); were it the caller's,
    the second call would find ``seq`` in it (reserved) or write the first call's fields."""
    nested = {"k": [1]}
    with AuditLog(logdir) as log:
        record_event = functools.partial(log.append, "x.partial", items=nested, n=1)
        first = record_event()
        second = record_event(session="s2")
        third = record_event()
        log.sync()
        written = [json.loads(line) for line in _lines(log)]
    assert record_event.keywords == {"items": {"k": [1]}, "n": 1}
    assert [r["seq"] for r in (first, second, third)] == [1, 2, 3]
    assert [r["session"] for r in written] == [None, "s2", None]
    assert nested == {"k": [1]}


# -- an interrupt mid-append ---------------------------------------------------------------


def _interrupt_at_entry_of(function: Any) -> Any:
    """A trace function raising KeyboardInterrupt once, as ``function`` is entered: where
    CPython runs a pending SIGINT handler (the RESUME of a Python function's frame)."""
    code = function.__code__
    fired: list[bool] = []

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        if event == "call" and frame.f_code is code and not fired:
            fired.append(True)
            raise KeyboardInterrupt
        return None

    return tracer


def _interrupt_at_call(n: int) -> Any:
    """A trace function raising KeyboardInterrupt as this thread enters its ``n``-th Python
    function: where CPython runs a pending SIGINT handler (a frame's RESUME)."""
    count = [0]

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        if event == "call":
            count[0] += 1
            if count[0] == n:
                raise KeyboardInterrupt
        return None

    return tracer


@pytest.mark.parametrize("body", [False, True], ids=["screened", "full-chain"])
def test_an_interrupt_entering_any_function_of_an_append_leaves_the_chain_whole(
        tmp_path: Path, body: bool) -> None:
    """Review s14b found the chain advanced after ``submit`` queued the record (a SIGINT
    between the two made the next record repeat its seq and prev; before 6793dc4 the chain
    advanced first, and a SIGINT between left a gap). The head now lives in the writer,
    set in the step that queues. Swept: an interrupt at every function an append enters;
    after it the log goes on gapless, or has failed closed, and what it wrote verifies (a
    SIGINT at the entry of ``Chain.advance`` repeated seq 2 before)."""
    bodies = {"code": "x = 1"} if body else None
    interrupted = 0
    for n in range(1, 500):
        directory = tmp_path / f"log{n}"
        log = AuditLog(directory)
        try:
            log.append("x.one")
            previous = sys.gettrace()   # a coverage tracer, say: put back after
            sys.settrace(_interrupt_at_call(n))
            try:
                log.append("x.two", bodies=bodies)
            except KeyboardInterrupt:
                interrupted += 1
            else:
                break   # n is past the append's last line: every line was tried
            finally:
                sys.settrace(previous)
            with contextlib.suppress(AuditWriteError):   # failed closed: fine
                log.append("x.three")
                log.sync()
        finally:
            with contextlib.suppress(AuditWriteError):
                log.close()
        seqs = [json.loads(line)["seq"] for line in
                (directory / "audit.jsonl").read_bytes().splitlines()]
        assert seqs == list(range(1, len(seqs) + 1)), (n, seqs)
        assert verify_log(directory).ok, n
    assert interrupted > 10


def _interrupt_targets() -> list[Any]:
    from rlmbox.audit import canonical, processors, redact, writer
    return [
        pytest.param(canonical.normalize_fresh, "plain", id="normalize_fresh"),
        pytest.param(processors.seal_after, "plain", id="seal-fast"),
        pytest.param(redact.Redactor.may_change, "plain", id="may_change"),
        pytest.param(AuditLog._queue, "plain", id="queue-fast"),
        pytest.param(writer.GroupCommitWriter.submit, "plain", id="submit-fast"),
        pytest.param(canonical.rfc3339_now, "plain", id="timestamp-fast"),
        pytest.param(processors.RedactSecrets.__call__, "secret", id="redact-full"),
        pytest.param(redact.Redactor.value, "secret", id="value-full"),
        pytest.param(processors.Canonicalize.__call__, "secret", id="canonicalize-full"),
        pytest.param(processors.seal_after, "secret", id="seal-full"),
        pytest.param(writer.GroupCommitWriter.submit, "secret", id="submit-full"),
        pytest.param(AuditLog._append_through_chain, "secret", id="through-chain"),
    ]


@pytest.mark.parametrize(("function", "kind"), _interrupt_targets())
def test_an_interrupt_before_the_record_is_queued_leaves_no_gap(
        logdir: Path, function: Any, kind: str) -> None:
    """A KeyboardInterrupt at the entry of each step up to the hand-off (either path): the
    record is not written and the next one takes its seq."""
    log = AuditLog(logdir, secrets=["int-secret-7"])
    try:
        log.append("x.one")
        attributes: dict[str, Any] = ({"v": "int-secret-7"} if kind == "secret"
                                      else {"v": "plain"})
        previous = sys.gettrace()
        sys.settrace(_interrupt_at_entry_of(function))
        try:
            with pytest.raises(KeyboardInterrupt):
                log.append("x.two", **attributes)
        finally:
            sys.settrace(previous)
        record = log.append("x.three", **attributes)
        log.sync()
        seqs = [json.loads(line)["seq"] for line in _lines(log)]
    finally:
        log.close()
    assert record["seq"] == 2
    assert seqs == [1, 2]
    assert verify_log(logdir).ok


def test_an_interrupt_while_submit_waits_for_room_leaves_the_chain_whole(
        logdir: Path) -> None:
    """Backpressure interrupted: the record was never queued, the next one takes its seq."""
    log = AuditLog(logdir, flush_interval_s=5.0)
    try:
        log.append("x.one")
        writer = log._writer
        real_wait = writer._durable.wait
        calls: list[int] = []

        def wait(timeout: float | None = None) -> bool:
            calls.append(1)
            raise KeyboardInterrupt

        writer._max_pending = 0            # the next submit waits for room
        writer._durable.wait = wait        # type: ignore[method-assign]
        with pytest.raises(KeyboardInterrupt):
            log.append("x.two")
        writer._durable.wait = real_wait   # type: ignore[method-assign]
        writer._max_pending = 64 * 1024 * 1024
        assert calls
        record = log.append("x.three")
        log.sync()
        seqs = [json.loads(line)["seq"] for line in _lines(log)]
    finally:
        log.close()
    assert record["seq"] == 2
    assert seqs == [1, 2]
    assert verify_log(logdir).ok


# -- the writer's armed wait ---------------------------------------------------------------


def _wait_durable(log: AuditLog, seq: int, limit: float) -> float:
    """Seconds until ``seq`` is durable (polling, no sync), or ``limit`` if never."""
    start = time.monotonic()
    while log.durable_seq < seq:
        if time.monotonic() - start > limit:
            return limit
        time.sleep(0.002)
    return time.monotonic() - start


def test_a_record_after_a_busy_caller_stops_syncing_is_committed_within_the_interval(
        logdir: Path) -> None:
    """The thread stays armed while a caller syncs its own records; a record then appended
    without a sync (durability: session) is still committed by the thread, within the
    interval (checked with 5x slack: a missed wake-up parks it for good)."""
    interval = 0.2
    with AuditLog(logdir, flush_interval_s=interval) as log:
        for _round in range(3):
            end = time.monotonic() + 0.3
            while time.monotonic() < end:
                log.append("x.synced")
                log.sync()
            seq = log.append("x.unsynced")["seq"]
            assert _wait_durable(log, seq, 5 * interval) < 5 * interval


def test_a_record_queued_during_a_callers_slow_commit_is_committed_after_it(
        logdir: Path) -> None:
    """A caller's commit (slow fsync) under way when the thread finds records queued: the
    thread waits armed, and the caller's commit leaving records behind wakes it."""
    interval = 0.1
    with AuditLog(logdir, flush_interval_s=interval) as log:
        writer = log._writer
        real_commit = writer._commit
        slow = threading.Event()

        def commit(*args: Any) -> None:
            if threading.current_thread() is not writer._thread and slow.is_set():
                time.sleep(0.6)
            real_commit(*args)

        writer._commit = commit   # type: ignore[method-assign,assignment]
        for _round in range(3):
            log.append("x.warm")
            log.sync()
            slow.set()
            syncer = threading.Thread(target=_append_and_sync, args=(log, "x.slow"))
            syncer.start()
            while not writer._committing:
                time.sleep(0.001)
            seq = log.append("x.during")["seq"]   # queued while the caller commits
            syncer.join()
            slow.clear()
            done = time.monotonic()
            waited = _wait_durable(log, seq, 5 * interval)
            assert waited < 5 * interval, (time.monotonic() - done)
    assert verify_log(logdir).ok


def test_close_during_the_armed_wait_of_a_long_interval_returns_promptly(
        logdir: Path) -> None:
    interval = 5.0
    log = AuditLog(logdir, flush_interval_s=interval)
    for _ in range(20):
        log.append("x.synced")
        log.sync()                 # the thread now waits armed (records keep coming)
    log.append("x.last")           # queued, due in 5 s
    start = time.monotonic()
    log.close()
    assert time.monotonic() - start < 2.0
    assert verify_log(logdir).ok
    assert len(log.path.read_bytes().splitlines()) == 21


def test_close_while_a_caller_commits_and_records_are_queued_flushes_them_all(
        logdir: Path) -> None:
    interval = 5.0
    log = AuditLog(logdir, flush_interval_s=interval)
    writer = log._writer
    real_commit = writer._commit

    def commit(*args: Any) -> None:
        if threading.current_thread() is not writer._thread:
            time.sleep(0.3)
        real_commit(*args)

    writer._commit = commit   # type: ignore[method-assign,assignment]
    log.append("x.one")
    syncer = threading.Thread(target=log.sync)
    syncer.start()
    while not writer._committing:
        time.sleep(0.001)
    log.append("x.two")
    start = time.monotonic()
    log.close()
    syncer.join()
    assert time.monotonic() - start < 2.5
    assert [json.loads(line)["event"] for line in log.path.read_bytes().splitlines()] == [
        "x.one", "x.two"]
    assert verify_log(logdir).ok


def test_backpressure_is_released_by_the_armed_thread_not_the_interval(
        logdir: Path) -> None:
    """With a 5 s interval and a small queue limit, appends blocked for room are each
    released by a kick, whatever wait the thread is in (armed, parked or due)."""
    interval = 5.0
    with AuditLog(logdir, flush_interval_s=interval) as log:
        log._writer._max_pending = 4096
        for _ in range(5):
            log.append("x.synced")
            log.sync()             # leave the thread armed
        start = time.monotonic()
        for i in range(200):
            log.append("x.big", i=i, pad="p" * 1000)
        assert time.monotonic() - start < 2.5
    assert verify_log(logdir).ok


def test_a_sync_racing_the_armed_thread_never_hangs(logdir: Path) -> None:
    """Four threads append and sync at random against a 1 ms interval; every sync returns
    (the test ends) and the chain verifies."""
    log = AuditLog(logdir, flush_interval_s=0.001)
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for i in range(400):
                log.append("x.w", k=k, i=i)
                if (i * (k + 1)) % 3 == 0:
                    log.sync()
        except BaseException as exc:   # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    log.close()
    assert not errors
    assert len(log.path.read_bytes().splitlines()) == 1600
    assert verify_log(logdir).ok


def test_a_failed_commit_while_the_thread_waits_armed_fails_everyone_promptly(
        logdir: Path) -> None:
    """A caller's commit fails (fsync error) while the thread waits armed with records
    behind it: appends and syncs raise AuditWriteError, close neither hangs nor succeeds,
    and nothing queued after the failed batch is written."""
    interval = 5.0
    log = AuditLog(logdir, flush_interval_s=interval)
    writer = log._writer
    real_commit = writer._commit
    for _ in range(10):
        log.append("x.synced")
        log.sync()
    gate = threading.Event()

    def failing_commit(*args: Any) -> None:
        gate.wait(10)
        raise OSError(5, "injected EIO")

    writer._commit = failing_commit   # type: ignore[method-assign,assignment]
    log.append("x.doomed")
    syncer_errors: list[BaseException] = []

    def sync() -> None:
        try:
            log.sync()
        except BaseException as exc:   # reported below
            syncer_errors.append(exc)

    syncer = threading.Thread(target=sync)
    syncer.start()
    while not writer._committing:
        time.sleep(0.001)
    log.append("x.behind")            # queued behind the failing batch
    gate.set()
    syncer.join(10)
    assert not syncer.is_alive()
    assert len(syncer_errors) == 1
    assert isinstance(syncer_errors[0], AuditWriteError)
    with pytest.raises(AuditWriteError):
        log.append("x.after")
    with pytest.raises(AuditWriteError):
        log.sync()
    writer._commit = real_commit       # type: ignore[method-assign]
    start = time.monotonic()
    with pytest.raises(AuditWriteError):
        log.close()
    assert time.monotonic() - start < 2.0
    events = [json.loads(line)["event"] for line in log.path.read_bytes().splitlines()]
    assert events == ["x.synced"] * 10


@pytest.mark.parametrize("secret_every", [0, 3])
def test_close_racing_appends_on_both_paths_keeps_every_returned_record(
        logdir: Path, secret_every: int) -> None:
    """Threads append (some records through the full chain: a secret) while the main thread
    closes: each append either returns a record that is in the file as returned, or raises
    AuditWriteError; the file verifies with no gap."""
    log = AuditLog(logdir, flush_interval_s=0.001, secrets=["close-race-secret"])
    returned: list[dict[str, Any]] = []
    errors: list[BaseException] = []
    started = threading.Barrier(5)

    def worker(k: int) -> None:
        started.wait()
        for i in range(100_000):
            secret = bool(secret_every) and i % secret_every == 0
            try:
                record = log.append("x.race", k=k, i=i,
                                    v="close-race-secret" if secret else "plain")
            except AuditWriteError:
                return
            except BaseException as exc:   # reported below
                errors.append(exc)
                return
            returned.append(record)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    started.wait()
    time.sleep(0.05)
    log.close()
    for thread in threads:
        thread.join(10)
    assert not errors, errors
    written = {r["seq"]: r for r in map(json.loads, log.path.read_bytes().splitlines())}
    assert sorted(written) == list(range(1, len(written) + 1))
    assert returned
    for record in returned:
        assert written[record["seq"]] == record
    assert b"close-race-secret" not in log.path.read_bytes()
    assert verify_log(logdir).ok


def test_close_writes_or_refuses_what_is_queued_with_an_infinite_interval(
        logdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    died: list[type[BaseException]] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: died.append(args.exc_type))
    log = AuditLog(logdir, flush_interval_s=float("inf"))
    log.append("x.one")
    log.sync()
    log.append("x.two")   # queued; only close (or a sync) can commit it now
    try:
        log.close()
    except AuditWriteError:
        return            # refusing is honest
    assert [json.loads(line)["event"] for line in _lines(log)] == ["x.one", "x.two"], died


def test_unsynced_records_beside_a_syncing_caller_are_each_committed_by_the_thread(
        logdir: Path) -> None:
    """Session durability beside a busy caller: one thread appends and syncs at random
    gaps around the interval (the thread armed, parked, or due in turn), another appends
    without syncing; every unsynced record becomes durable. Bound checked with a wide
    margin (2 s for a 50 ms interval): a missed wake-up strands a record for good."""
    interval = 0.05
    log = AuditLog(logdir, flush_interval_s=interval)
    stop = threading.Event()
    errors: list[BaseException] = []
    worst: list[float] = [0.0]

    def syncer() -> None:
        rng = random.Random(7)
        try:
            while not stop.is_set():
                log.append("x.synced")
                log.sync()
                time.sleep(rng.uniform(0, 2 * interval))
        except BaseException as exc:   # reported below
            errors.append(exc)

    other = threading.Thread(target=syncer)
    other.start()
    rng = random.Random(11)
    try:
        for _ in range(25):
            seq = log.append("x.unsynced")["seq"]
            worst[0] = max(worst[0], _wait_durable(log, seq, 2.0))
            time.sleep(rng.uniform(0, 2 * interval))
    finally:
        stop.set()
        other.join(10)
        log.close()
    assert not errors
    assert worst[0] < 2.0
    assert verify_log(logdir).ok


def test_backpressure_behind_a_callers_slow_commit_is_released_when_it_ends(
        logdir: Path) -> None:
    """A caller's commit is slow (0.4 s); meanwhile another thread fills the queue past its
    limit and waits for room, with a 5 s interval. Once the caller's commit ends the
    waiting appends are released by a commit of the thread (kicked), not the interval."""
    interval = 5.0
    log = AuditLog(logdir, flush_interval_s=interval)
    writer = log._writer
    real_commit = writer._commit
    slow = threading.Event()

    def commit(*args: Any) -> None:
        if threading.current_thread() is not writer._thread and slow.is_set():
            time.sleep(0.4)
        real_commit(*args)

    writer._commit = commit   # type: ignore[method-assign,assignment]
    writer._max_pending = 4096
    for _ in range(5):
        log.append("x.synced")
        log.sync()
    slow.set()
    log.append("x.slow")
    syncer = threading.Thread(target=log.sync)
    syncer.start()
    while not writer._committing:
        time.sleep(0.001)
    start = time.monotonic()
    for i in range(60):
        log.append("x.big", i=i, pad="p" * 1000)
    elapsed = time.monotonic() - start
    syncer.join(10)
    slow.clear()
    log.close()
    assert elapsed < 3.0
    assert len(log.path.read_bytes().splitlines()) == 66
    assert verify_log(logdir).ok


@pytest.mark.parametrize("interval", [float("nan"), -1.0, "5"])
def test_a_flush_interval_that_is_no_number_of_seconds_is_refused(
        logdir: Path, interval: Any) -> None:
    """Fixed after review s14b: an interval the writer cannot wait is refused at open."""
    with pytest.raises(ValueError, match="flush_interval_s"):
        AuditLog(logdir, flush_interval_s=interval)
    AuditLog(logdir).close()   # the directory lock was let go


def _append_and_sync(log: AuditLog, event: str) -> None:
    log.append(event)
    log.sync()
