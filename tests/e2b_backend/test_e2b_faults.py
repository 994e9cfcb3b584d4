"""Faults of E2B, made by the double: each ends as specified, never in a hang, with
nothing left running on the double."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from e2b_double import E2BDouble

from rlmbox.errors import SandboxUnavailable, SessionKilled
from rlmbox.runtime.runtime import Runtime
from rlmbox.sandboxes.e2b.calls import Backoff

CREATE = ("POST", "/v2/sandboxes")


def _ready(e2b_runtime: Callable[..., Runtime]) -> Runtime:
    """A runtime whose backend has probed already (the probe makes a VM of its own)."""
    rt = e2b_runtime()
    rt.backend("e2b").properties()
    return rt


def _creates(double: E2BDouble) -> int:
    return sum(1 for request in double.requests if request == CREATE)


def test_transient_create_failures_are_retried(e2b_runtime: Callable[..., Runtime],
                                               double: E2BDouble) -> None:
    """Two 429s and a 502, then success: the session starts, after four creates."""
    rt = _ready(e2b_runtime)
    before = _creates(double)
    double.faults.fail_next(*CREATE, 429, 429, 502)
    with rt.session() as session:
        assert session.exec("print(7)").stdout.strip() == "7"
    assert _creates(double) - before == 4


@pytest.mark.parametrize(("status", "cause", "tries"), [
    (401, "API key", 1), (429, "quota", 4), (503, "service", 4), (500, "service", 4)])
def test_a_failed_create_names_its_cause(e2b_runtime: Callable[..., Runtime],
                                         double: E2BDouble, status: int, cause: str,
                                         tries: int) -> None:
    """Auth is not retried; quota and service failures are, a bounded number of times."""
    rt = _ready(e2b_runtime)
    before = _creates(double)
    double.faults.fail_next(*CREATE, *[status] * 4)
    with pytest.raises(SandboxUnavailable, match=cause):
        rt.session()
    assert _creates(double) - before == tries


def test_vms_made_by_creates_whose_answer_was_lost_are_killed(
        e2b_runtime: Callable[..., Runtime], double: E2BDouble) -> None:
    """Every create makes a VM and answers 500: after the last attempt rlmbox finds them
    by their session tag and kills them all."""
    rt = _ready(e2b_runtime)
    double.faults.lost_creates = 4
    with pytest.raises(SandboxUnavailable, match="service"):
        rt.session()
    assert not double.sandboxes


def test_backoff_waits_are_bounded_and_jittered() -> None:
    backoff = Backoff(attempts=6, base_s=0.2, cap_s=1.0)
    waits = [backoff.wait(n) for n in range(6) for _ in range(50)]
    assert all(0 <= w <= 1.0 for w in waits)
    assert len({round(w, 6) for w in waits}) > 100   # random, not in step


def _exec_bounded(session: object, code: str, bound_s: float) -> object:
    """Runs a cell on a thread; fails the test if the host does not return in time."""
    box: list[object] = []
    thread = threading.Thread(target=lambda: box.append(session.exec(code)),  # type: ignore[attr-defined]
                              daemon=True)
    thread.start()
    thread.join(bound_s)
    if not box:
        raise AssertionError(f"exec did not return within {bound_s} s (the host hung)")
    return box[0]


def test_a_connection_dropped_mid_cell_ends_the_session_with_the_reason(
        e2b_runtime: Callable[..., Runtime], double: E2BDouble) -> None:
    rt = _ready(e2b_runtime)
    with rt.session() as session:
        timer = threading.Timer(0.5, double.drop_streams)
        timer.start()
        result = _exec_bounded(session, "import time\nfor i in range(40):\n"
                                        "    print(i, flush=True); time.sleep(0.05)\n", 20)
        timer.join()
    assert result.status == "killed"  # type: ignore[attr-defined]
    assert "dropped" in (result.error or "")  # type: ignore[attr-defined]


def test_a_sandbox_that_expires_mid_cell_is_lost_with_the_reason(
        e2b_runtime: Callable[..., Runtime], double: E2BDouble) -> None:
    rt = _ready(e2b_runtime)
    with rt.session() as session:
        sandbox_id = session.sandbox.info.sandbox_id
        timer = threading.Timer(0.5, double.expire, args=(sandbox_id,))
        timer.start()
        started = time.monotonic()
        result = _exec_bounded(session, "import time\ntime.sleep(2.5)\n", 20)
        timer.join()
        assert result.status == "killed"  # type: ignore[attr-defined]
        assert "expired" in (result.error or "")  # type: ignore[attr-defined]
        assert time.monotonic() - started < 10
        with pytest.raises(SessionKilled, match="expired"):
            session.exec("print(1)")
    assert sandbox_id not in double.sandboxes
