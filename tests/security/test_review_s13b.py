"""Hostile review s13b of the interrupt (security.md 23f, daemon.md "Interrupting a cell").

Promise attacked: an interrupting thread (a daemon server thread) is never held up by a
sandbox that stops reading. s12/s13 made the interrupt go without the send lock when a
reply is being written to a sandbox that does not read it. Here the sandbox does not read
at all and takes no reply: its cell ignores SIGINT and sleeps, and the host's own
interrupt frames, each written whole (a pipe write under PIPE_BUF is all or nothing),
fill the pipe. The send lock is then free, so each interrupt takes it and waits
INTERRUPT_FRAME_WAIT_S for room that never comes. Real sandbox (process backend: a plain
pipe, 64 KiB, filled by ~1700 frames).
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest

from rlmbox.daemon.lifecycle import DaemonConfig
from rlmbox.policies.model import load_policy
from rlmbox.runtime.results import ExecResult
from tests.daemon.conftest import TEST_LIMITS, RunningDaemon, policy_file, short_dir

from .harness import Runtimes, audit_records, exec_bounded, watched_session

BOUND_S = 20.0
# ignores SIGINT and never reads its frames (no host call), then ends by itself
_DEAF = ("import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
         "time.sleep(6)\nprint('done')\n")
HELD_S = 0.5


@pytest.mark.parametrize("backend", ["process"])
def test_a_sandbox_that_reads_nothing_holds_no_interrupting_thread_up(
        runtimes: Runtimes) -> None:
    rt = runtimes(limits={"cell_timeout_s": 15.0})
    with watched_session(rt) as (session, _):
        exec_bounded(session, "kept = 41", BOUND_S)
        box: dict[str, ExecResult] = {}
        worker = threading.Thread(target=lambda: box.update(r=session.exec(_DEAF)))
        worker.start()
        time.sleep(0.5)   # the cell has ignored SIGINT and sleeps
        took: list[float] = []
        held: list[float] = []
        while worker.is_alive() and len(took) < 5000 and len(held) < 3:
            asked = time.monotonic()
            assert session.interrupt("test")
            took.append(time.monotonic() - asked)
            if took[-1] > HELD_S:
                held.append(took[-1])
        worker.join(BOUND_S)
        after = exec_bounded(session, "print(kept)", BOUND_S)
    print(f"{len(took)} interrupts, held: {held}")
    assert box["r"].stdout == "done\n", box["r"]   # it ignored them all, as it may
    assert after.stdout == "41\n", after
    assert len(took) > 100   # the pipe took many frames first
    assert not held, f"interrupt() held up {held} s after {len(took)} calls"


@pytest.mark.parametrize("backend", ["process"])
def test_close_while_an_interrupt_waits_on_a_full_pipe(runtimes: Runtimes) -> None:
    """Held: the interrupts of a deaf cell, then a close() from another thread while one
    more is asked: the close ends at once, the interrupt answers True without raising, the
    cell ends SessionClosed, and ``session.end`` is the session's last record, after the
    ``cell.interrupt``. (Written when each interrupt wrote a frame and filled the deaf
    cell's pipe, so the last one waited on it holding the send lock; one frame a cell now,
    the pipe never fills and no interrupt is held: the first test.)"""
    rt = runtimes(limits={"cell_timeout_s": 15.0})
    session = rt.session()
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["r"] = session.exec(_DEAF.replace("time.sleep(6)", "time.sleep(12)"))
        except Exception as exc:   # SessionClosed: the close won
            box["r"] = exc

    worker = threading.Thread(target=run)
    worker.start()
    time.sleep(0.5)
    for _ in range(5000):   # one interrupt frame for the cell, then SIGINTs alone
        asked = time.monotonic()
        assert session.interrupt("test")
        assert time.monotonic() - asked < HELD_S
    answer: dict[str, object] = {}

    def ask() -> None:
        try:
            answer["a"] = session.interrupt("last")
        except BaseException as exc:
            answer["a"] = exc

    asker = threading.Thread(target=ask)
    asker.start()
    time.sleep(0.2)
    started = time.monotonic()
    session.close()
    closed_in = time.monotonic() - started
    asker.join(5)
    worker.join(BOUND_S)
    names = [r["event"] for r in audit_records(rt) if r.get("session") == session.id]
    assert closed_in < 0.5, closed_in
    assert answer.get("a") is True, answer
    assert type(box["r"]).__name__ == "SessionClosed", box
    assert names[-1] == "session.end", names[-4:]
    assert names.count("session.end") == 1
    assert len(names) - names[::-1].index("cell.interrupt") - 1 < names.index("session.end")


@pytest.mark.parametrize("backend", ["process"])
def test_interrupts_of_a_sandbox_that_reads_answer_at_once(runtimes: Runtimes) -> None:
    """Held, the control of the case above: a cell that ignores SIGINT but makes a host
    call now and then (the agent reads the pipe, and the interrupt frames in it) gets
    3000 interrupts, none of them held up, and the session goes on."""
    rt = runtimes(limits={"cell_timeout_s": 15.0})
    code = _DEAF.replace("time.sleep(6)",
                         "end = time.monotonic() + 6\nwhile time.monotonic() < end:\n"
                         "    time.sleep(0.05)\n    try:\n        llm_query('p')\n"
                         "    except Exception:\n        pass")
    with watched_session(rt) as (session, _):
        exec_bounded(session, "kept = 41", BOUND_S)
        box: dict[str, ExecResult] = {}
        worker = threading.Thread(target=lambda: box.update(r=session.exec(code)))
        worker.start()
        time.sleep(0.5)
        took: list[float] = []
        while worker.is_alive() and len(took) < 3000:
            asked = time.monotonic()
            session.interrupt("test")
            took.append(time.monotonic() - asked)
        worker.join(BOUND_S)
        after = exec_bounded(session, "print(kept)", BOUND_S)
    assert len(took) == 3000, len(took)
    assert max(took) < HELD_S, max(took)
    assert after.stdout == "41\n", after


def test_concurrent_interrupts_of_a_deaf_cell_do_not_starve_another_tenant(
        tmp_path: Path) -> None:
    """Held, the daemon's side of the first case: Alice sends 60 interrupts of her deaf
    cell at once; Bob's cell runs at once. (Written when her earlier interrupts had filled
    the cell's pipe with frames, ~1700 at her allowed rate, so one of the 60 held the send
    lock for its 1 s write and the others sent SIGINT alone: one server thread waited, not
    the pool. One frame a cell now: the pipe never fills.)"""
    sock = short_dir()
    limits = {**load_policy("default").model_dump(mode="json")["limits"], **TEST_LIMITS,
              "cell_timeout_s": 90}
    config = DaemonConfig(
        state_dir=tmp_path / "state", socket=sock / "rlmbox.sock",
        policies={"test": load_policy(policy_file(tmp_path, limits=limits))},
        audit_dir=None)
    running = RunningDaemon(config)
    try:
        with running.client("alice") as alice, running.client("bob") as bob:
            deaf = alice.create_session()["id"]
            other = bob.create_session()["id"]
            bob.exec(other, "print(1)")

            def run() -> None:
                with contextlib.suppress(Exception):   # closed below, mid-cell
                    alice.exec(deaf, _DEAF.replace("time.sleep(6)", "time.sleep(80)"))

            worker = threading.Thread(target=run)
            worker.start()
            time.sleep(1.0)
            token = running.token("alice")

            def http() -> httpx.Client:
                return httpx.Client(transport=httpx.HTTPTransport(uds=str(running.socket)),
                                    base_url="http://rlmbox", timeout=60,
                                    headers={"Authorization": f"Bearer {token}"})

            ready = threading.Barrier(61)

            def ask() -> None:
                with http() as client:
                    ready.wait(30)
                    client.post(f"/v1/sessions/{deaf}/interrupt")

            askers = [threading.Thread(target=ask) for _ in range(60)]
            for asker in askers:
                asker.start()
            ready.wait(30)
            time.sleep(0.3)   # all of them on the server's pool
            started = time.monotonic()
            assert bob.exec(other, "print(2)").stdout == "2\n"
            took = time.monotonic() - started
            for asker in askers:
                asker.join(60)
            alice.close_session(deaf)
            worker.join(30)
    finally:
        running.stop()
        shutil.rmtree(sock, ignore_errors=True)
    print(f"bob's cell took {took:.2f} s")
    assert took < 0.3, f"bob's cell waited {took:.2f} s behind alice's interrupts"
