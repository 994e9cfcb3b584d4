"""Interrupting a running cell through the daemon: ``POST /v1/sessions/{id}/interrupt``
and the exec stream's ``{"type": "interrupt"}`` message, on every backend. The cell ends
``interrupted`` with its namespace kept, the interrupt is audited with the tenant, and a
tenant cannot interrupt another tenant's cell."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from rlmbox.daemon.client import AsyncClient, Client
from rlmbox.daemon.lifecycle import DaemonConfig
from rlmbox.errors import DaemonError
from rlmbox.lm.scripted import ScriptedLM
from rlmbox.policies.model import load_policy
from rlmbox.runtime.results import ExecResult
from tests.daemon.conftest import RunningDaemon, policy_file, short_dir

from .harness import BACKEND_LIMITS, BASE_LIMITS, ISOLATION

SPIN = "import time\nprint('started', flush=True)\nwhile True:\n    time.sleep(0.01)\n"
CELL_LIMIT_S = 60


@pytest.fixture
def running(backend: str, tmp_path: Path) -> Iterator[RunningDaemon]:
    sock = short_dir()
    policy = policy_file(tmp_path, "operator", isolation={**ISOLATION[backend], "require": []},
                         limits={**BASE_LIMITS, **BACKEND_LIMITS.get(backend, {}),
                                 "cell_timeout_s": CELL_LIMIT_S})
    daemon = RunningDaemon(DaemonConfig(
        state_dir=tmp_path / "state", socket=sock / "rlmbox.sock",
        policies={"operator": load_policy(policy)}, lm=ScriptedLM(default="x")))
    try:
        yield daemon
    finally:
        daemon.stop()
        shutil.rmtree(sock, ignore_errors=True)


def _spin_in_thread(client: Client, session_id: str,
                    pool: ThreadPoolExecutor) -> tuple[Future[ExecResult], threading.Event]:
    """Starts the spinning cell on a thread; the event is set once it printed."""
    started = threading.Event()
    future = pool.submit(client.exec_stream, session_id, SPIN,
                         on_output=lambda stream, text: started.set())
    assert started.wait(60), "the cell never started"
    return future, started


def test_the_interrupt_route_stops_the_running_cell(running: RunningDaemon) -> None:
    """The cell ends interrupted long before its limit; the session lives on with its
    variables; the interrupt is audited naming the tenant."""
    with running.client("alice") as alice, ThreadPoolExecutor(1) as pool:
        sid = alice.create_session()["id"]
        assert alice.exec(sid, "kept = 41").ok
        assert alice.interrupt(sid) is False   # nothing runs: nothing to interrupt
        future, _ = _spin_in_thread(alice, sid, pool)
        began = time.monotonic()
        assert alice.interrupt(sid) is True
        result = future.result(30)
        assert result.status == "interrupted", result
        assert time.monotonic() - began < CELL_LIMIT_S / 2
        assert alice.exec(sid, "print(kept + 1)").stdout == "42\n"
        events, _ = alice.audit(session=sid, limit=1000)
    interrupts = [e for e in events if e["event"] == "cell.interrupt"]
    assert len(interrupts) == 1
    assert interrupts[0]["tenant"] == "alice"
    assert interrupts[0]["by"] == "daemon client"


def test_the_stream_interrupt_message_stops_the_running_cell(
        running: RunningDaemon) -> None:
    with running.client("alice") as alice:
        sid = alice.create_session()["id"]

    async def spin_then_interrupt() -> ExecResult:
        stop = asyncio.Event()
        async with AsyncClient(socket=running.socket, token=running.token("alice")) as c:
            return await c.exec_stream(sid, SPIN, on_output=lambda s, t: stop.set(),
                                       interrupt=stop)

    began = time.monotonic()
    result = asyncio.run(spin_then_interrupt())
    assert result.status == "interrupted", result
    assert time.monotonic() - began < CELL_LIMIT_S / 2


def test_a_tenant_cannot_interrupt_another_tenants_cell(running: RunningDaemon) -> None:
    """Bob's interrupt of Alice's session is a 404 (no existence oracle) and her cell runs
    on undisturbed."""
    with running.client("alice") as alice, running.client("bob") as bob, \
            ThreadPoolExecutor(1) as pool:
        sid = alice.create_session()["id"]
        future, _ = _spin_in_thread(alice, sid, pool)
        with pytest.raises(DaemonError) as refused:
            bob.interrupt(sid)
        assert refused.value.status == 404
        time.sleep(1.0)
        assert not future.done()   # still spinning: bob's request reached nothing
        assert alice.interrupt(sid) is True
        assert future.result(30).status == "interrupted"
