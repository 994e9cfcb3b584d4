"""Review s15b: hostile tests of two changes at the host-call seam and the file transfers.

97a640a: a host call an interrupt abandons raises ``KeyboardInterrupt`` in the cell (it
raised ``TimeoutError``), and so does any later call of the interrupted cell, so the cell
ends ``interrupted`` whichever reaches the sandbox first (security.md 23e). The review broke
it (a batch returned error strings and the cell ended ok; a ThreadPool or queue worker,
which catches ``Exception``, died of the KeyboardInterrupt): the lead replaced it. The
call raises ``TimeoutError`` again and the *host* reports a cell its caller interrupted as
``interrupted`` whatever the cell did after; the tests below are adapted to that.
4d4978b: a whole ``write_file``/``read_file`` must end within two chunk timeouts plus 1 s a
MiB; past it the sandbox is killed (security.md F4b, policy-reference.md's files
paragraph). A strict xfail marks a break found; the rest held.
"""

from __future__ import annotations

import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from rlmbox.daemon.lifecycle import DaemonConfig
from rlmbox.errors import DaemonError, FileTransferRefused, SessionKilled
from rlmbox.lm.scripted import ScriptedLM
from rlmbox.policies.model import load_policy
from rlmbox.runtime import session_files
from tests.daemon.conftest import RunningDaemon, policy_file, short_dir

from .harness import (
    BACKEND_LIMITS,
    BASE_LIMITS,
    ISOLATION,
    Runtimes,
    attempt_bounded,
    audit_records,
    events,
    exec_bounded,
    watched_session,
)
from .test_review_s14a import FILES_RULES, POISON_FILES

BOUND_S = 30.0
SIGINT_IGNORED = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
PERMIT = [{"id": "permit-tools", "effect": "permit", "function": "tool.*"},
          {"id": "permit-llm", "effect": "permit", "function": "llm_query"},
          {"id": "permit-llm-batched", "effect": "permit", "function": "llm_query_batched"}]


class _HungLM:
    """An LM whose answers wait for ``release`` (a hung provider)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.asked: list[str] = []

    def __call__(self, prompt: str) -> str:
        self.asked.append(prompt)
        self.release.wait(15)
        return "late-answer"


def _interrupt_after(session: Any, delay: float) -> threading.Timer:
    timer = threading.Timer(delay, lambda: session.interrupt("review-s15b"))
    timer.start()
    return timer


# --- 1. an interrupt that cuts a call ---------------------------------------------------------

@pytest.mark.parametrize("backend", ["process", "docker-runc"])
def test_a_batched_call_the_interrupt_abandons_interrupts_the_cell(
        runtimes: Runtimes) -> None:
    hung = _HungLM()
    rt = runtimes(rules=PERMIT, lm=ScriptedLM(hung), limits={"cell_timeout_s": 20})
    with watched_session(rt) as (session, _):
        timer = _interrupt_after(session, 1.0)
        began = time.monotonic()
        result = exec_bounded(session, SIGINT_IGNORED + (
            "got = llm_query_batched(['a', 'b'])\n"
            "print('returned', got)\n"), BOUND_S)
        took = time.monotonic() - began
        timer.join()
        hung.release.set()
        after = exec_bounded(session, "print('next')", BOUND_S)
    assert took < 10, took
    assert (after.status, after.stdout) == ("ok", "next\n"), after
    assert "the cell was interrupted" in result.stdout, result.stdout
    assert result.status == "interrupted", (result.status, result.error, result.stdout)


@pytest.mark.parametrize("backend", ["process"])
def test_a_batched_call_made_after_the_interrupt_is_not_run_and_says_why(
        runtimes: Runtimes) -> None:
    release = threading.Event()
    rt = runtimes(rules=PERMIT, limits={"cell_timeout_s": 20})
    with watched_session(rt, tools={"slow": lambda: release.wait(15)}) as (session, _):
        timer = _interrupt_after(session, 1.0)
        result = exec_bounded(session, (
            "try:\n"
            "    slow()\n"
            "except BaseException:\n"
            "    pass\n"
            "try:\n"
            "    got = llm_query_batched(['a', 'b'])\n"
            "except BaseException as exc:\n"
            "    got = f'{type(exc).__name__}: {exc}'\n"
            "print(repr(got))\n"), BOUND_S)
        timer.join()
        release.set()
    assert result.status == "interrupted", result
    assert result.stdout == repr(["Error: TimeoutError: llm_query_batched item not run: the "
                                  "cell was interrupted"] * 2) + "\n", result.stdout


@pytest.mark.parametrize("backend", ["process", "docker-runsc"])
def test_a_single_llm_query_made_after_the_interrupt_is_not_run(
        runtimes: Runtimes) -> None:
    release = threading.Event()
    lm = ScriptedLM(lambda prompt: "answer")
    rt = runtimes(rules=PERMIT, lm=lm, limits={"cell_timeout_s": 20})
    with watched_session(rt, tools={"slow": lambda: release.wait(15)}) as (session, _):
        timer = _interrupt_after(session, 1.0)
        result = exec_bounded(session, (
            "try:\n"
            "    slow()\n"
            "except BaseException:\n"
            "    pass\n"
            "try:\n"
            "    got = llm_query('a')\n"
            "except BaseException as exc:\n"
            "    got = f'{type(exc).__name__}: {exc}'\n"
            "print(got)\n"), BOUND_S)
        timer.join()
        release.set()
        after = exec_bounded(session, "print(llm_query('b'))", BOUND_S)
    assert result.status == "interrupted", result
    assert result.stdout.startswith("TimeoutError: llm_query abandoned: the cell was "
                                    "interrupted"), result.stdout
    assert (after.status, after.stdout) == ("ok", "answer\n"), after


POOL_INTERRUPTED = """
from multiprocessing.pool import ThreadPool
pool = ThreadPool(2)
print('pool up', flush=True)
pool.map(lambda _: slow(), range(2))
"""
POOL_AFTER = """
print(pool.map(lambda x: x * 2, [1, 2]))
pool.close()
pool.join()
print('joined')
"""


@pytest.mark.parametrize("backend", ["process", "docker-runc"])
def test_a_thread_pool_kept_from_an_interrupted_cell_still_joins(runtimes: Runtimes) -> None:
    release = threading.Event()
    rt = runtimes(rules=PERMIT, limits={"cell_timeout_s": 6})
    with watched_session(rt, tools={"slow": lambda: release.wait(15)}) as (session, _):
        timer = _interrupt_after(session, 1.5)
        first = exec_bounded(session, POOL_INTERRUPTED, BOUND_S)
        timer.join()
        release.set()
        assert first.status == "interrupted", first
        assert "pool up" in first.stdout, first
        after = exec_bounded(session, POOL_AFTER, BOUND_S)
    assert (after.status, after.stdout) == ("ok", "[2, 4]\njoined\n"), after


QUEUE_WORKERS = """
import queue, threading
q = queue.Queue()
results = []
def worker():
    while True:
        prompt = q.get()
        try:
            results.append(llm_query(prompt))
        except Exception as exc:
            results.append(f'failed: {exc}')
        q.task_done()
for _ in range(2):
    threading.Thread(target=worker, daemon=True).start()
for prompt in ['a', 'b']:
    q.put(prompt)
print('queued', flush=True)
q.join()
"""
QUEUE_AFTER = """
q.put('c')
q.join()
print(results[-1])
"""


@pytest.mark.parametrize("backend", ["process"])
def test_queue_workers_of_an_interrupted_cell_still_serve_the_next_cell(
        runtimes: Runtimes) -> None:
    hung = _HungLM()
    answered = ScriptedLM(lambda prompt: hung(prompt) if prompt in ("a", "b") else "fresh")
    rt = runtimes(rules=PERMIT, lm=answered, limits={"cell_timeout_s": 6})
    with watched_session(rt) as (session, _):
        timer = _interrupt_after(session, 1.5)
        first = exec_bounded(session, QUEUE_WORKERS, BOUND_S)
        timer.join()
        hung.release.set()
        assert first.status == "interrupted", first
        assert "queued" in first.stdout, first
        after = exec_bounded(session, QUEUE_AFTER, BOUND_S)
    assert (after.status, after.stdout) == ("ok", "fresh\n"), after



EXECUTOR_INTERRUPTED = """
import signal
from concurrent.futures import ThreadPoolExecutor
signal.signal(signal.SIGINT, signal.SIG_IGN)
executor = ThreadPoolExecutor(2)
futures = [executor.submit(slow) for _ in range(2)]
print('submitted', flush=True)
[f.result() for f in futures]
print('all returned')
"""
EXECUTOR_AFTER = """
print(list(executor.map(lambda x: x * 2, [1, 2])))
executor.shutdown(wait=True)
print('shut down')
"""


@pytest.mark.parametrize("backend", ["process", "docker-runc", "docker-runsc"])
def test_an_executor_future_cut_by_the_interrupt_interrupts_the_cell_and_shuts_down(
        runtimes: Runtimes) -> None:
    """concurrent.futures keeps a BaseException in the future: the reply's KeyboardInterrupt
    reaches the main thread at ``result()`` even with SIGINT ignored, and the executor kept
    in the namespace still maps and shuts down in the next cell."""
    release = threading.Event()
    rt = runtimes(rules=PERMIT, limits={"cell_timeout_s": 8})
    with watched_session(rt, tools={"slow": lambda: release.wait(15)}) as (session, _):
        timer = _interrupt_after(session, 1.5)
        first = exec_bounded(session, EXECUTOR_INTERRUPTED, BOUND_S)
        timer.join()
        release.set()
        after = exec_bounded(session, EXECUTOR_AFTER, BOUND_S)
    assert first.status == "interrupted", first
    assert "submitted" in first.stdout, first
    assert "all returned" not in first.stdout, first
    assert (after.status, after.stdout) == ("ok", "[2, 4]\nshut down\n"), after



def _daemon_interrupted_cell(backend: str, tmp_path: Path, code: str) -> tuple[Any, Any]:
    """A real daemon whose LM hangs; the cell runs on the exec stream and the client's
    interrupt route lands once the LM is asked. Returns the cell's result and the next's."""
    hung = _HungLM()
    asked = threading.Event()

    def lm(prompt: str) -> str:
        asked.set()
        return hung(prompt)

    sock = short_dir()
    policy = policy_file(tmp_path, "operator", isolation={**ISOLATION[backend], "require": []},
                         limits={**BASE_LIMITS, **BACKEND_LIMITS.get(backend, {}),
                                 "cell_timeout_s": 20},
                         rules=PERMIT)
    daemon = RunningDaemon(DaemonConfig(
        state_dir=tmp_path / "state", socket=sock / "rlmbox.sock",
        policies={"operator": load_policy(policy)}, lm=ScriptedLM(lm)))
    try:
        with daemon.client("alice") as alice, ThreadPoolExecutor(1) as pool:
            sid = alice.create_session()["id"]
            future = pool.submit(alice.exec_stream, sid, code,
                                 on_output=lambda stream, text: None)
            if not asked.wait(30):
                raise AssertionError(f"the LM was never asked: {future.result(BOUND_S)}")
            assert alice.interrupt(sid) is True
            result = future.result(BOUND_S)
            hung.release.set()
            after = alice.exec(sid, "print('next')")
    finally:
        hung.release.set()
        daemon.stop()
        shutil.rmtree(sock, ignore_errors=True)
    return result, after


@pytest.mark.parametrize("backend", ["process"])
def test_a_single_call_cut_through_the_daemon_interrupts_the_cell(
        backend: str, tmp_path: Path) -> None:
    result, after = _daemon_interrupted_cell(
        backend, tmp_path, SIGINT_IGNORED + "got = llm_query('a')\nprint('returned', got)\n")
    assert result.status == "interrupted", result
    assert "returned" not in result.stdout, result
    assert (after.status, after.stdout) == ("ok", "next\n"), after


@pytest.mark.parametrize("backend", ["process"])
def test_a_batched_call_cut_through_the_daemon_interrupts_the_cell(
        backend: str, tmp_path: Path) -> None:
    result, after = _daemon_interrupted_cell(
        backend, tmp_path,
        SIGINT_IGNORED + "got = llm_query_batched(['a', 'b'])\nprint('returned', got)\n")
    assert (after.status, after.stdout) == ("ok", "next\n"), after
    assert "the cell was interrupted" in result.stdout, result
    assert result.status == "interrupted", result


# --- 2. the whole-transfer deadline ---------------------------------------------------------

MiB = 1024 * 1024
SLOW_READ = ('    import time\n'
             '    time.sleep(0.8)\n'
             '    if frame.get("op") != "read":\n'
             '        return {"t": "result", "id": frame["id"], "status": "ok", '
             '"has_answer": True, "answer": None}\n'
             '    return {"t": "result", "id": frame["id"], "status": "ok", '
             '"has_answer": True, "answer": {"size": 12 * 1024, '
             '"data": base64.b64encode(b"y" * 1024).decode()}}')


@pytest.mark.parametrize("backend", ["process"])
def test_a_read_stalling_at_the_whole_deadline_kills_audits_and_tells_the_caller(
        runtimes: Runtimes, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each 1 KiB piece answered just inside a 1 s chunk timeout: the 2 s whole deadline
    (the MiB allowance made negligible) ends it; the session is dead, said so, audited, and
    no process of its sandbox is left (watched_session's witness)."""
    monkeypatch.setattr(session_files, "CHUNK_TIMEOUT_S", 1.0)
    monkeypatch.setattr(session_files, "CHUNK_BYTES", 1024)
    monkeypatch.setattr(session_files, "SLOWEST_TRANSFER_BYTES_PER_S", 1 << 40)
    rt = runtimes(rules=FILES_RULES)
    with watched_session(rt) as (session, _):
        poison = exec_bounded(session, POISON_FILES.format(body=SLOW_READ), BOUND_S)
        assert poison.status == "ok", poison
        read = attempt_bounded(lambda: session.read_file("/tmp/slow"), BOUND_S)
        took = read.took
        assert not read.held
        with pytest.raises(SessionKilled):
            session.exec("print('after')")
    exc = read.error
    assert isinstance(exc, FileTransferRefused), read
    assert "did not answer" in str(exc), exc
    assert "the session is dead" in str(exc), exc
    assert took < 4.0, f"held {took:.1f} s"
    failed = events(rt, "file.transfer", function="files.read", outcome="error")
    assert len(failed) == 1, failed
    assert "did not answer" in failed[0]["reason"], failed[0]
    ends = [r for r in audit_records(rt) if r.get("event") == "session.end"]
    assert len(ends) == 1, ends
    assert "did not answer a file transfer" in str(ends[0].get("death_reason")), ends[0]


@pytest.mark.parametrize("backend", ["docker-runsc"])
def test_a_large_legitimate_transfer_on_runsc_is_not_refused_by_the_deadline(
        runtimes: Runtimes) -> None:
    """``file_transfer_mb`` raised to 256 on gVisor, on a loaded host: a 128 MiB write (its
    deadline 248 s) and its read (376 s) both go through, well inside their deadlines."""
    rt = runtimes(rules=FILES_RULES, limits={
        "file_transfer_mb": 256, "file_size_mb": 200, "disk_mb": 300, "memory_mb": 1024})
    data = bytes(range(256)) * (128 * MiB // 256)
    with watched_session(rt) as (session, _):
        began = time.monotonic()
        session.write_file("/tmp/large", data)
        wrote = time.monotonic() - began
        began = time.monotonic()
        back = session.read_file("/tmp/large")
        read = time.monotonic() - began
    assert back == data
    # not near the deadlines either: a slower host would start to see refusals
    assert wrote < (2 * session_files.CHUNK_TIMEOUT_S + 128) / 4, wrote
    assert read < (2 * session_files.CHUNK_TIMEOUT_S + 256) / 4, read
    print(f"128 MiB on runsc: write {wrote:.1f} s, read {read:.1f} s")


SLOW_WRITE = ('    import time\n'
              '    time.sleep(0.5)\n'
              '    return {"t": "result", "id": frame["id"], "status": "ok", '
              '"has_answer": True, "answer": None}')


def _close_during_slow_write(
        runtimes: Runtimes,
        monkeypatch: pytest.MonkeyPatch) -> tuple[BaseException | None, float, list[Any]]:
    """The daemon's DELETE (``Session.close`` from another thread) while a write of 40
    chunks waits on a sandbox taking 0.5 s a chunk: the write's error, how long it went on
    after the close, and the audit records."""
    monkeypatch.setattr(session_files, "CHUNK_BYTES", 1024)
    rt = runtimes(rules=FILES_RULES)
    box: dict[str, Any] = {}
    with watched_session(rt) as (session, _):
        poison = exec_bounded(session, POISON_FILES.format(body=SLOW_WRITE), BOUND_S)
        assert poison.status == "ok", poison

        def write() -> None:
            try:
                session.write_file("/tmp/slow", b"x" * (1024 * 40))
            except BaseException as exc:   # judged below
                box["exc"] = exc

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        time.sleep(1.2)   # two chunks written
        began = time.monotonic()
        session.close("review-s15b")
        writer.join(BOUND_S)
        took = time.monotonic() - began
        assert not writer.is_alive()
    return box.get("exc"), took, audit_records(rt)


@pytest.mark.parametrize("backend", ["process"])
def test_a_close_during_a_slow_write_ends_it_at_once_and_records_nothing_after_the_end(
        runtimes: Runtimes, monkeypatch: pytest.MonkeyPatch) -> None:
    """The write ends at once with an error naming the close, no record follows
    ``session.end``, and no process is left (the witness)."""
    exc, took, records = _close_during_slow_write(runtimes, monkeypatch)
    assert exc is not None, "the write went on after the close"
    assert "closed" in str(exc), repr(exc)
    assert took < 3.0, took
    names = [r.get("event") for r in records]
    assert names.count("session.end") == 1, names
    assert names[-1] == "session.end", names


@pytest.mark.parametrize("backend", ["process"])
def test_a_write_cut_by_the_close_is_still_one_file_transfer_record(
        runtimes: Runtimes, monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, records = _close_during_slow_write(runtimes, monkeypatch)
    names = [r.get("event") for r in records]
    writes = [r for r in records
              if r.get("event") == "file.transfer" and r.get("function") == "files.write"]
    assert len(writes) == 1, names
    assert names.index("file.transfer") < names.index("session.end"), names


class _ChildRLM:
    """The child's root LM: the first child's code sleeps past the interrupt, later ones
    answer at once."""

    def __init__(self) -> None:
        self.children = 0

    def __call__(self, prompt: str) -> str:
        self.children += 1
        if self.children == 1:
            return "```repl\nimport time\ntime.sleep(30)\n```"
        return "```repl\nFINAL('child-ok')\n```"


@pytest.mark.parametrize("backend", ["process"])
def test_an_rlm_query_cut_by_the_interrupt_frees_its_slot_for_the_next_cell(
        runtimes: Runtimes) -> None:
    """The parent cell's ``rlm_query`` is abandoned by the interrupt (the cell ends
    interrupted) and its child closed; under ``max_concurrent: 2`` (the root and one child)
    the next cell's ``rlm_query`` still gets the slot at once."""
    rt = runtimes(limits={"cell_timeout_s": 20},
                  rules=[{"id": "permit-rlm", "effect": "permit", "function": "rlm_query"}],
                  budgets={"tree": {"calls": 50, "max_depth": 1, "max_concurrent": 2}})
    rt.rlm_lm = ScriptedLM(_ChildRLM())
    with watched_session(rt) as (session, _):
        timer = _interrupt_after(session, 3.0)
        began = time.monotonic()
        first = exec_bounded(session, "r = rlm_query('hang-me')\nprint('returned', r)",
                             BOUND_S)
        took = time.monotonic() - began
        timer.join()
        after = exec_bounded(session, "print(rlm_query('quick'))", BOUND_S)
    assert first.status == "interrupted", first
    assert "returned" not in first.stdout, first
    assert took < 10, took
    assert (after.status, after.stdout) == ("ok", "child-ok\n"), after



@pytest.mark.parametrize("backend", ["process"])
def test_a_stalled_write_through_the_daemon_is_a_clear_400_and_the_session_is_dead(
        backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon's PUT on a sandbox answering each chunk just inside the chunk timeout:
    refused at the whole deadline (a 400, FileTransferRefused again in the client) saying
    the session is dead; the session is listed killed, its next cell is refused."""
    monkeypatch.setattr(session_files, "CHUNK_TIMEOUT_S", 1.0)
    monkeypatch.setattr(session_files, "CHUNK_BYTES", 1024)
    sock = short_dir()
    rules = [*PERMIT, {"id": "permit-files", "effect": "permit", "function": "files.*"}]
    policy = policy_file(tmp_path, "operator", isolation={**ISOLATION[backend], "require": []},
                         limits={**BASE_LIMITS, **BACKEND_LIMITS.get(backend, {})},
                         rules=rules)
    daemon = RunningDaemon(DaemonConfig(
        state_dir=tmp_path / "state", socket=sock / "rlmbox.sock",
        policies={"operator": load_policy(policy)}, lm=ScriptedLM(default="x")))
    try:
        with daemon.client("alice") as alice:
            sid = alice.create_session()["id"]
            poison = alice.exec(sid, POISON_FILES.format(body=SLOW_WRITE.replace("0.5", "0.8")))
            assert poison.status == "ok", poison
            began = time.monotonic()
            with pytest.raises(FileTransferRefused) as refused:
                alice.write_file(sid, "/tmp/slow", b"x" * (1024 * 12))
            took = time.monotonic() - began
            state = alice.session(sid)["state"]
            with pytest.raises((DaemonError, SessionKilled)) as next_cell:
                alice.exec(sid, "print('ran')")
    finally:
        daemon.stop()
        shutil.rmtree(sock, ignore_errors=True)
    assert took < 3 * 1.0 + 2, took
    assert "did not answer" in str(refused.value), refused.value
    assert "the session is dead" in str(refused.value), refused.value
    assert state == "killed", state
    assert "dead" in str(next_cell.value), repr(next_cell.value)
