"""Review audit: attacks on the audit log's redaction and group-commit writer (main at 6b46b83).

The promises (docs/audit-format.md "Redaction evidence", "The processor chain", promise 7;
docs/security.md row 40c; rlmbox/audit/redact.py): secrets (registered values and credential
shapes) never reach the log or its bodies; a body a credential pattern cut keeps the
original's digest and spans, so the sandbox cannot hide data from the log by making it look
like a key; sandbox text reaches attributes only through ``error``, whose whole text is a
body.

Broken when the review wrote them (each test failed then; all fixed in the same stop, the
marks removed: the lead fixed the attribute cuts, the writer and the interrupt, helper
redactfix the redaction):

Redaction and evidence
- A secret straddling the 1024-character cut of ``host.call``'s ``error`` attribute: the
  dispatcher cuts before the log redacts, so neither the exact value nor the pattern
  matches; all but the tail of a registered secret (40 of 42 characters) or a GitHub token
  (35 of 36) is written. The sandbox positions the cut with its own argument, and
  ``GET /v1/audit`` hands a daemon tenant its records.
- A registered secret holding a backslash or quote is written JSON-escaped in the ``args``
  body (bodies that are JSON texts: ``args``, ``answer``); promise 7 names that form.
- A bearer token after a tab or newline in those JSON bodies, and after a Unicode or
  ASCII-separator space (U+00A0, U+2003, U+001C) in any body: redacted in attributes (the
  text pattern's ``\\s``), kept in bodies (the bytes pattern's ``\\s``, escapes).
- GitHub fine-grained tokens (``github_pat_...``) are not redacted: the pattern is
  "GitHub tokens" but knows only the classic ``gh[pousr]_`` prefixes.
- Sandbox text in attributes beyond ``error`` (audit-format.md says there is none), cut by a
  pattern without evidence: ``cell.result``'s ``error`` (a cell that raises; no ``error``
  body), an unknown function's name, a protocol violation's message (``sandbox.killed``
  ``reason``, ``cell.result`` ``error``, ``session.end`` ``death_reason``); the last quotes
  the frame's type or field name whole, 300,000 characters in three records (promise 10).
- A nested value the caller's thread changes after the pre-check (``needs``) said "nothing
  to redact" is copied by ``Canonicalize`` afterwards and written unredacted.
- A registered all-digit secret reaches the log in an integer attribute.

Writer
- An ``append`` interrupted (a signal: Ctrl-C) while it waits for backpressure has taken
  its ``seq``; the log is not failed, the next record chains past the hole, and ``verify``
  calls the honest log tampered (``deleted``).
- A signal while ``sync()``'s own commit takes the writer's lock back (``finally``) leaves
  ``_committing`` set and the log not failed: later syncs and ``close`` hang for good.
- A forked child writes through the inherited log (the flock travels with the
  descriptor): two records share a seq and ``verify`` says ``edited``.
- ``Session.interrupt`` (the daemon's interrupt route) is acknowledged before its
  ``cell.interrupt`` record is durable under ``durability: cell``.

Held (passing tests below, or commands in the review report): every listed credential form
(``sk-ant-``, ``sk-``, ``Bearer``, ``AKIA``, ``ghp_ gho_ ghu_ ghs_ ghr_``) at the start,
middle and end of attribute strings, keys, nested lists and tuples, event, session, tenant
and parent names, body names and bodies, with digest and spans for body cuts; the
pre-check's anchors against the patterns (200,000 generated events); no pattern is
catastrophic on 1 MiB bodies; many threads appending and syncing while ``close`` races
them; a close racing a commit in flight; a failing fsync on the background thread fails
every thread closed; kill -9 mid-batch (rotation, bodies) then ``rlmbox audit verify``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rlmbox.audit.bodies import BodyStore
from rlmbox.audit.log import AuditLog
from rlmbox.audit.redact import REDACTED
from rlmbox.audit.verify import verify_log
from rlmbox.audit.writer import GroupCommitWriter
from rlmbox.errors import AuditWriteError

from .harness import Runtimes, audit_records, events, watched_session
from .test_protocol_attacks import FORGE
from .test_review_seam import FORGE_CALL

HIDDEN = "EXFILTRATED-DATA-0123456789"
KEY_SHAPED = "sk-" + "a" * 24 + HIDDEN


def _all_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file())


def _proves(record: dict[str, Any], original: str) -> bool:
    """The record keeps the original verbatim, or redaction evidence of a body holding it
    (``<name>_original_sha256`` and ``<name>_redactions``)."""
    if any(isinstance(value, str) and original in value for value in record.values()):
        return True
    return any(key.endswith("_original_sha256") and f"{key[:-16]}_redactions" in record
               for key in record)


@pytest.mark.parametrize("backend", ["process"], indirect=True)
def test_a_cell_error_dressed_as_a_key_keeps_its_evidence(runtimes: Runtimes) -> None:
    """``raise RuntimeError('sk-' + 'a'*24 + data)``: the caller gets the text; the log must
    keep it or prove it (digest and spans), as it does for stdout (row 40c)."""
    rt = runtimes()
    with watched_session(rt) as (session, _):
        result = session.exec(f"raise RuntimeError({KEY_SHAPED!r})")
        assert result.status == "error"
        assert result.error is not None
        assert HIDDEN in result.error
        [record] = events(rt, "cell.result", cell=result.cell_id)
    assert record["error"] != result.error   # the pattern cut it
    evidence = {k: v for k, v in record.items() if k.startswith("error_")}
    assert evidence.get("error_original_sha256") == hashlib.sha256(
        result.error.encode()).hexdigest(), record


@pytest.mark.parametrize("backend", ["process"], indirect=True)
def test_a_forged_function_name_dressed_as_a_key_keeps_its_evidence(
        runtimes: Runtimes) -> None:
    """docs/audit-format.md: "sandbox text reaches attributes only through ``error``"; the
    ``function`` of a call to no such function is the sandbox's text too."""
    rt = runtimes()
    with watched_session(rt) as (session, _):
        result = session.exec(FORGE_CALL + f"forge_call(901, {KEY_SHAPED!r})\nprint('sent')")
        assert result.stdout == "sent\n"
        denied = events(rt, "host.call", call_id=901)
    assert denied, "the forged call is recorded"
    assert _proves(denied[0], KEY_SHAPED), denied[0]


@pytest.mark.parametrize("backend", ["process"], indirect=True)
@pytest.mark.parametrize("frame", ["{'t': BIG}", "{'t': 'output', BIG: 1}", "{'t': [BIG]}"])
def test_a_protocol_violation_records_no_more_than_output_bytes(runtimes: Runtimes,
                                                                 frame: str) -> None:
    """Promise 10: no record holds more than ``output_bytes`` (65536 here) of any string a
    sandbox reported. A frame whose type (or a field name) is 300,000 characters is a
    protocol violation whose message names it whole: ``sandbox.killed`` ``reason``,
    ``cell.result`` ``error`` and ``session.end`` ``death_reason`` hold it, and an 8 MiB
    frame would put 8 MB in each."""
    rt = runtimes()
    with watched_session(rt) as (session, _):
        result = session.exec(FORGE + f"BIG = 'Z' * 300_000\nforge({frame})\n"
                              "import time; time.sleep(2)")
        assert result.status == "killed"
    sizes = {(r["event"], k): len(v) for r in audit_records(rt) for k, v in r.items()
             if isinstance(v, str) and len(v) > 65536}
    assert not sizes, sizes


@pytest.mark.parametrize("backend", ["process"], indirect=True)
def test_a_protocol_violation_dressed_as_a_key_keeps_its_evidence(runtimes: Runtimes) -> None:
    """Whatever of the forged type the caller is told (the message quotes it clipped), the
    log keeps it or proves it: the reason is a body too, redacted with evidence."""
    rt = runtimes()
    with watched_session(rt) as (session, _):
        result = session.exec(FORGE + f"forge({{'t': {KEY_SHAPED!r}}})\n"
                              "import time; time.sleep(2)")
        assert result.status == "killed"
        assert result.error is not None
        told = result.error.removeprefix("SessionKilled: ")
        assert "sk-" in told
        [killed] = events(rt, "sandbox.killed")
    assert _proves(killed, told), killed


@pytest.mark.parametrize("backend", ["process"], indirect=True)
def test_an_interrupt_is_acknowledged_only_once_its_record_is_durable(
        runtimes: Runtimes, monkeypatch: pytest.MonkeyPatch) -> None:
    """audit-format.md: every action is "fsynced before the action is acknowledged"; under
    ``durability: cell`` a session's records are synced before it answers. The writer's
    commits are held while a cell runs: ``interrupt()`` must not return True before
    ``cell.interrupt`` is on disk (it returns at once, its record only queued)."""
    rt = runtimes()
    gate = threading.Event()
    real_commit = GroupCommitWriter._commit

    def held_commit(self: GroupCommitWriter, *args: Any) -> None:
        gate.wait(20)
        real_commit(self, *args)

    answers: list[bool] = []
    with watched_session(rt) as (session, _):
        runner = threading.Thread(target=session.exec, args=("import time; time.sleep(5)",))
        monkeypatch.setattr(GroupCommitWriter, "_commit", held_commit)
        try:
            runner.start()
            deadline = time.monotonic() + 10
            while session.state.name != "RUNNING" and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.3)   # the cell's frame is in the sandbox
            asker = threading.Thread(target=lambda: answers.append(session.interrupt()))
            asker.start()
            asker.join(2)
            answered_while_held = list(answers)
        finally:
            gate.set()
            runner.join(20)
        asker.join(20)
    assert answers == [True]
    assert answered_while_held == [], "interrupt acknowledged with its record not durable"


class _Interrupted(Exception):
    """Raised by the test's signal handler in the main thread (a Ctrl-C, in effect)."""


def _raise_interrupted(signum: int, frame: object) -> None:
    raise _Interrupted


def test_an_append_interrupted_in_backpressure_leaves_a_verifiable_log(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``append`` takes the ``seq`` (``Chain``) and then waits in ``submit`` while too much
    is queued. A signal there (Ctrl-C in an embedded host) leaves the chain advanced past a
    record that is never queued; the log is not failed, goes on, and ``verify`` then calls
    the honest log tampered (``deleted``). The wait is made certain by holding the commit
    and a zero backpressure limit; the signal is sent once the main thread waits in it."""
    gate = threading.Event()
    real_commit = GroupCommitWriter._commit

    def held_commit(self: GroupCommitWriter, *args: Any) -> None:
        gate.wait(20)
        real_commit(self, *args)

    monkeypatch.setattr(GroupCommitWriter, "_commit", held_commit)
    previous = signal.signal(signal.SIGUSR1, _raise_interrupted)
    log = AuditLog(tmp_path, flush_interval_s=0.001)
    try:
        log._writer._max_pending = 0
        log.append("first")
        main = threading.main_thread()

        def interrupt_when_waiting() -> None:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not (
                    _waiting_in(main, "append") and _waiting_in(main, "wait")):
                time.sleep(0.005)
            signal.pthread_kill(main.ident or 0, signal.SIGUSR1)

        with contextlib.suppress(_Interrupted):
            sender = threading.Thread(target=interrupt_when_waiting)
            sender.start()
            log.append("second")   # waits for room; the signal interrupts it
            sender.join(10)
    finally:
        signal.signal(signal.SIGUSR1, previous)
        gate.set()
    log.append("third")
    log.close()
    report = verify_log(tmp_path)
    assert report.ok, (report.first_bad_seq, report.reason)


def test_a_sync_interrupted_as_its_commit_ends_leaves_a_log_that_fails_or_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``_commit_queue_locked`` releases the writer's lock for the I/O and takes it back in
    ``finally``; the module handles a KeyboardInterrupt *during* the write (fails closed),
    but one raised while that ``acquire`` waits (appenders hold the lock) leaves
    ``_committing`` True and the log not failed: the background thread parks for good,
    a later ``sync`` waits forever for a commit no one ends, and ``close`` hangs too.
    Made certain: the commit is held, another thread takes the lock, the signal is sent
    once the main thread waits for it."""
    gate = threading.Event()
    real_commit = GroupCommitWriter._commit
    main = threading.main_thread()

    def held_commit(self: GroupCommitWriter, *args: Any) -> None:
        if threading.current_thread() is main:
            gate.wait(20)
        real_commit(self, *args)

    monkeypatch.setattr(GroupCommitWriter, "_commit", held_commit)
    previous = signal.signal(signal.SIGUSR1, _raise_interrupted)
    log = AuditLog(tmp_path, flush_interval_s=10)
    mutex = log._writer._mutex

    def contend_then_interrupt() -> None:
        _wait_until(lambda: _waiting_in(main, "held_commit"))
        mutex.acquire()
        gate.set()
        _wait_until(lambda: _innermost(main) == "_commit_queue_locked")
        signal.pthread_kill(main.ident or 0, signal.SIGUSR1)
        time.sleep(0.05)
        with contextlib.suppress(RuntimeError):   # sync's exit may have released it
            mutex.release()

    try:
        log.append("first")
        with contextlib.suppress(_Interrupted):
            helper = threading.Thread(target=contend_then_interrupt)
            helper.start()
            log.sync()
            helper.join(10)
    finally:
        signal.signal(signal.SIGUSR1, previous)
        gate.set()
    outcomes: list[str] = []

    def go_on() -> None:
        try:
            log.append("second")
            log.sync()
            log.close()
            outcomes.append("written")
        except AuditWriteError:
            outcomes.append("failed closed")

    later = threading.Thread(target=go_on, daemon=True)
    later.start()
    later.join(5)
    assert outcomes, "sync or close hangs after the interrupted commit"


def _wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.002)


def _innermost(thread: threading.Thread) -> str | None:
    frame = sys._current_frames().get(thread.ident or -1)
    return None if frame is None else frame.f_code.co_name


def _waiting_in(thread: threading.Thread, function: str) -> bool:
    frame = sys._current_frames().get(thread.ident or -1)
    while frame is not None:
        if frame.f_code.co_name == function:
            return True
        frame = frame.f_back
    return False


HOST_SECRET = "prov-key-7f3a9c1e5b2d4f6a8c0e9d8c7b6a5f4e"   # noqa: S105  (fake)
UNREGISTERED_KEY = "ghp_" + "Q7wZ" * 9   # a GitHub token nobody registered (36 after ghp_)


@pytest.mark.parametrize("backend", ["process"], indirect=True)
@pytest.mark.parametrize("secret", [HOST_SECRET, UNREGISTERED_KEY], ids=["registered", "pattern"])
def test_a_secret_straddling_the_error_attribute_cut_is_not_written(
        runtimes: Runtimes, secret: str) -> None:
    """A tool fails with the host's secret in its message after the sandbox's argument
    (row 42 expects tools to do so). ``_error_fields`` cuts the attribute at 1024 characters
    and the log redacts afterwards: the sandbox pads its argument so the cut falls inside
    the secret, which then neither matches exactly nor as a pattern. The body ``error``
    holds the whole text and is redacted; the attribute keeps all but the tail."""
    rt = runtimes(rules=[{"id": "permit-all", "effect": "permit", "function": "*"}])
    rt.audit.add_secret(HOST_SECRET)

    def lookup(key: str) -> None:
        raise RuntimeError(f"lookup {key} failed with credential {secret}")

    with rt.session(tools={"lookup": lookup}) as session:
        result = session.exec("for n in range(900, 1000, 4):\n"
                              "    try:\n"
                              "        lookup('k' * n)\n"
                              "    except Exception:\n"
                              "        pass\n")
        assert result.status == "ok", result.error
        assert rt.audit_path is not None
        data = _all_bytes(rt.audit_path.parent)
    assert secret.encode() not in data   # held: the whole secret is in no file
    assert secret[: len(secret) * 3 // 4].encode() not in data   # 31 of 42, 30 of 40 characters


@pytest.mark.parametrize("backend", ["process"], indirect=True)
def test_a_secret_with_a_backslash_is_in_no_body_json_escaped(runtimes: Runtimes) -> None:
    """Promise 7: a registered secret "appears in no file under the directory, including
    bodies and its JSON-escaped form". A host call's ``args`` body (and a cell's ``answer``)
    is JSON: a prompt holding ``vault\\token-...`` is stored as ``vault\\\\token-...``,
    which the body redaction (raw bytes) does not match. The stdout body is redacted."""
    secret = "vault\\token-9f8e7d6c5b4a"   # noqa: S105  (fake; a Windows-path-like value)
    rt = runtimes()
    rt.audit.add_secret(secret)
    with watched_session(rt) as (session, _):
        result = session.exec("S = 'vault' + chr(92) + 'token-9f8e7d6c5b4a'\n"
                              "print(S)\nllm_query('use ' + S)")
        assert result.stdout == secret + "\n"
        assert rt.audit_path is not None
        data = _all_bytes(rt.audit_path.parent)
    assert secret.encode() not in data   # held: the raw form is in no file
    assert json.dumps(secret)[1:-1].encode() not in data


def test_a_forked_child_cannot_write_into_its_parents_log(tmp_path: Path) -> None:
    """docs/audit-format.md: ``.lock`` "flock: one writer per directory". A host that
    forks (multiprocessing's default start method on Linux) hands the child the log, its
    descriptors and its flock: the child's ``append`` + ``sync`` write seq N+1, and so does
    the parent's next record; ``verify`` then reports the log ``edited``. The child should
    be refused (or the record kept out); the log must verify either way."""
    log = AuditLog(tmp_path)
    log.append("parent.before")
    log.sync()
    pid = os.fork()
    if pid == 0:   # the child: try to write, then leave without running any cleanup
        signal.alarm(10)   # a lock some thread held at the fork cannot hang the test
        with contextlib.suppress(BaseException):
            log.append("child")
            log.sync()
        os._exit(0)
    os.waitpid(pid, 0)
    log.append("parent.after")
    log.close()
    report = verify_log(tmp_path)
    assert report.ok, (report.kind, report.first_bad_seq, report.reason)


@pytest.mark.parametrize("where", ["attribute", "key", "body"])
def test_a_github_fine_grained_token_is_redacted(tmp_path: Path, where: str) -> None:
    token = "github_pat_11ABCDEFG0" + "a1B2c3D4e5" * 8 + "xy"   # 82 characters after the prefix
    with AuditLog(tmp_path) as log:
        if where == "attribute":
            log.append("x", note=f"token {token} used")
        elif where == "key":
            log.append("x", headers={token: 1})
        else:
            log.append("x", bodies={"stdout": f"{token}\n"})
    assert token[-40:].encode() not in _all_bytes(tmp_path)


@pytest.mark.parametrize("space", ["\u00a0", "\x1c", "\u2003"])
def test_a_bearer_token_is_redacted_alike_in_attributes_and_bodies(
        tmp_path: Path, space: str) -> None:
    secret_part = "eyJhbGciOiJIUzI1NiJ9abcdefXYZ"   # noqa: S105  (fake)
    text = f"Authorization: Bearer{space}{secret_part}"
    with AuditLog(tmp_path) as log:
        log.append("x", note=text)   # held: the attribute is redacted
        assert secret_part.encode() not in _all_bytes(tmp_path)
        log.append("y", bodies={"stdout": text})
    assert secret_part.encode() not in _all_bytes(tmp_path)


@pytest.mark.parametrize("space", ["\t", "\n"])
def test_a_bearer_token_in_a_json_body_is_redacted(tmp_path: Path, space: str) -> None:
    """Host calls' ``args`` and cells' ``answer`` bodies are JSON texts: the prompt
    ``Authorization: Bearer<TAB>token`` is stored as ``Bearer\\ttoken``; the same text in
    stdout or in an attribute is redacted (held, asserted first)."""
    secret_part = "eyJhbGciOiJIUzI1NiJ9abcdefXYZ"   # noqa: S105  (fake)
    text = f"Authorization: Bearer{space}{secret_part}"
    with AuditLog(tmp_path) as log:
        log.append("x", note=text, bodies={"stdout": text})
        assert secret_part.encode() not in _all_bytes(tmp_path)
        log.append("host.call", bodies={"args": json.dumps({"prompt": text})})
    assert secret_part.encode() not in _all_bytes(tmp_path)


def test_a_nested_value_changed_after_the_pre_check_is_still_redacted(tmp_path: Path) -> None:
    """The pre-check (``Redactor.needs``) sees no secret, so ``RedactSecrets`` passes the
    caller's nested dict on uncopied; the caller's thread then puts a secret in it before
    ``Canonicalize`` copies it. The interleaving is made certain by holding the writer's
    lock, which the append takes in ``DigestBodies`` (between the two)."""
    secret = "prov-key-7f3a9c1e5b2d4f6a8c0e"   # noqa: S105  (fake)
    log = AuditLog(tmp_path, secrets=[secret])
    shared: dict[str, Any] = {"notes": ["clean"]}
    errors: list[BaseException] = []

    def append() -> None:
        try:
            log.append("x.race", v=shared, bodies={"b": "body"})
        except BaseException as exc:   # reported below
            errors.append(exc)

    with log._writer._mutex:   # the append waits for it in stage_body
        worker = threading.Thread(target=append)
        worker.start()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not _waiting_in(worker, "stage_body"):
            time.sleep(0.01)
        assert _waiting_in(worker, "stage_body")
        shared["notes"].append(f"now {secret}")
    worker.join(10)
    log.close()
    assert not errors, errors
    assert verify_log(tmp_path).ok
    assert secret.encode() not in _all_bytes(tmp_path)


def test_a_numeric_secret_in_an_integer_attribute_is_redacted(tmp_path: Path) -> None:
    secret = "4929123456781234"   # noqa: S105  (a card-number-shaped value the host registered)
    with AuditLog(tmp_path, secrets=[secret]) as log:
        log.append("host.call", args={"account": int(secret)})
    assert secret.encode() not in _all_bytes(tmp_path)


# --- held --------------------------------------------------------------------------------

CREDENTIALS = {
    "anthropic": "sk-ant-api03-" + "Ab1_-" * 10,
    "openai": "sk-proj-" + "Ab1" * 10,
    "bearer": "Bearer eyJhbGciOiJIUzI1NiJ9.abc_def~ghi+jkl/mno=",
    "bearer-tab": "BEARER\t" + "x" * 20,
    "aws": "AKIAABCDEFGHIJKLMNOP",
    **{p: f"{p}_" + "a1B2" * 9 for p in ("ghp", "gho", "ghu", "ghs", "ghr")},
}


@pytest.mark.parametrize("name", sorted(CREDENTIALS))
def test_every_listed_credential_form_is_redacted_everywhere(tmp_path: Path, name: str) -> None:
    credential = CREDENTIALS[name]
    tail = credential[-16:]
    with AuditLog(tmp_path) as log:
        for text in (f"{credential} tail", f"head {credential} tail", f"head {credential}"):
            log.append("x", note=text, l=[1, (text,)], d={text: {"k": [text]}},
                       bodies={"stdout": text, text: "named"})
            log.append(text, session=text, tenant=text, parent=text)
    data = _all_bytes(tmp_path)
    assert tail.encode() not in data
    assert verify_log(tmp_path).ok
    records = (tmp_path / "audit.jsonl").read_text()
    assert '"stdout_original_sha256"' in records
    assert '"stdout_redactions"' in records


_LOCK = threading.Lock()


def _append_until_refused(log: AuditLog, k: int, stop: threading.Event, acked: list[int],
                          raised: list[int]) -> None:
    """Appends until stopped or refused; odd workers sync each record and note it acked."""
    n = 0
    while not stop.is_set():
        try:
            record = log.append("e", k=k, n=n)
            n += 1
            if k % 2:
                log.sync()
                with _LOCK:
                    acked.append(record["seq"])
        except AuditWriteError:
            with _LOCK:
                raised.append(k)
            return


def test_a_failing_fsync_on_the_writer_thread_fails_every_thread_closed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Threads append (half of them sync) while the background commit's fsync fails once:
    every later append and sync raises, nothing after the failure reaches the file, and what
    was acknowledged before verifies."""
    log = AuditLog(tmp_path, flush_interval_s=0.001, checkpoint_every=5)
    real_fsync = os.fsync
    armed = threading.Event()
    failed_in: list[str] = []

    def fsync(fd: int) -> None:
        if armed.is_set() and threading.current_thread().name == "rlmbox-audit-writer":
            armed.clear()
            failed_in.append(threading.current_thread().name)
            raise OSError(5, "injected EIO")
        real_fsync(fd)

    monkeypatch.setattr("rlmbox.audit.writer.os.fsync", fsync)
    acked: list[int] = []
    raised: list[int] = []
    stop = threading.Event()
    threads = [threading.Thread(target=_append_until_refused, args=(log, k, stop, acked, raised))
               for k in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)
    armed.set()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(raised) < len(threads):
        time.sleep(0.005)
    stop.set()
    for thread in threads:
        thread.join(10)
    assert failed_in, "the writer thread never committed"
    assert sorted(raised) == [0, 1, 2, 3]
    with pytest.raises(AuditWriteError):
        log.append("after")
    with pytest.raises(AuditWriteError):
        log.sync()
    with pytest.raises(AuditWriteError):
        log.close()
    text = (tmp_path / "audit.jsonl").read_text()
    seqs = [int(line.split('"seq":')[1].split(",")[0]) for line in text.splitlines()]
    assert seqs == list(range(1, len(seqs) + 1))
    assert all(seq <= len(seqs) for seq in acked)
    assert '"after"' not in text


def test_a_credential_shaped_body_keeps_digest_and_spans_through_the_log(
        tmp_path: Path) -> None:
    """Pattern-only cuts at the start, middle and end of a body: the stored body is cut, the
    record holds the digest of the original and the spans."""
    body = f"{CREDENTIALS['aws']} x {CREDENTIALS['ghp']} y {CREDENTIALS['anthropic']}"
    with AuditLog(tmp_path) as log:
        record = log.append("x", bodies={"stdout": body})
    original = body.encode()
    assert record["stdout_original_sha256"] == hashlib.sha256(original).hexdigest()
    cut = [original[s["start"]:s["end"]].decode() for s in record["stdout_redactions"]]
    assert cut == [CREDENTIALS["aws"], CREDENTIALS["ghp"], CREDENTIALS["anthropic"]]
    stored = BodyStore(tmp_path / "bodies").read(record["stdout_sha256"])
    assert stored == f"{REDACTED} x {REDACTED} y {REDACTED}".encode()


@pytest.mark.parametrize("committer", ["caller", "rlmbox-audit-writer"])
def test_a_close_racing_a_commit_in_flight_writes_everything_and_returns(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, committer: str) -> None:
    """A commit (the caller's own sync, or the background thread's) is held mid-fsync; a
    record is queued behind it, two more syncs wait and ``close`` starts: once the fsync
    goes on, every thread returns, both records are on disk and the chain verifies."""
    real_fsync = os.fsync
    gate, entered = threading.Event(), threading.Event()

    def fsync(fd: int) -> None:
        if threading.current_thread().name == committer and not gate.is_set():
            entered.set()
            gate.wait(20)
        real_fsync(fd)

    monkeypatch.setattr("rlmbox.audit.writer.os.fsync", fsync)
    log = AuditLog(tmp_path, flush_interval_s=0.001 if committer != "caller" else 10)
    log.append("first")
    first = threading.Thread(target=log.sync if committer == "caller" else time.sleep,
                             args=() if committer == "caller" else (0,), name="caller")
    first.start()
    assert entered.wait(10)
    log.append("second")
    others = [threading.Thread(target=log.sync) for _ in range(2)]
    closer = threading.Thread(target=log.close)
    for thread in [*others, closer]:
        thread.start()
    time.sleep(0.1)
    gate.set()
    for thread in [first, *others, closer]:
        thread.join(10)
        assert not thread.is_alive()
    events = [json.loads(line)["event"]
              for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert events == ["first", "second"]
    assert verify_log(tmp_path).ok
