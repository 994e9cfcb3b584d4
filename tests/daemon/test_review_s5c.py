"""Review s5c: attacks on the tenant cell cap's hold on ``rlm_query`` children
(``daemon/child_cells.py``: a free slot of the tenant, or the parent's lane).

Each test performs the attack and asserts the promise of docs/daemon.md (Limits, item 2)
and docs/security.md (D2a); those marked ``xfail(strict=True)`` succeed today (remove the
mark once fixed).
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable

from rlmbox.daemon.admission import Admission
from rlmbox.daemon.child_cells import ChildCells
from rlmbox.daemon.limits import DaemonLimits
from rlmbox.errors import RlmboxError
from rlmbox.lm.scripted import ScriptedLM

from .conftest import RunningDaemon

SPAN = re.compile(r"span ([0-9.]+) ([0-9.]+)")
CHILD_TASK = "Task: Answer the request given in `context`."


def _span_cell(seconds: float) -> str:
    """A child's cell that reports when it ran (the host and the sandbox share the clock)."""
    return (f"```repl\nimport time\nt0 = time.time()\ntime.sleep({seconds})\n"
            f"print('span', t0, time.time())\n```")


def _most_at_once(spans: set[tuple[float, float]]) -> int:
    return max((sum(1 for s, e in spans if s <= start < e) for start, _ in spans), default=0)


def test_a_lane_forgotten_under_running_children_still_admits_one_child_at_a_time() -> None:
    """child_cells.py: a lane is the parent's slot "lent to its children one at a time".
    ``forget`` runs when the parent *session* ends (``TenantGate.leave``), which a DELETE
    or the reaper does while the parent's cell still waits in ``rlm_query`` (the cell's
    thread, and the children, go on). The lane is popped under the child that holds it:
    the next child gets a fresh lock and runs beside it, and that lock is never forgotten
    (a lane leaked per such session)."""
    admission = Admission(DaemonLimits(cells_per_tenant=1), audit_bytes=lambda _t: 0)
    children = ChildCells(lambda: admission.try_take_cell("alice"))
    root = admission.take_cell("alice")   # the parent's cell, blocked in rlm_query
    second_in = threading.Event()

    def sibling() -> None:
        with children.slot("root"):
            second_in.set()

    with children.slot("root"):   # a child's cell, in the parent's lane
        # DELETE of the parent session meanwhile: its gate's leave() (no lane is dropped)
        admission.leave_session("alice", "root")
        thread = threading.Thread(target=sibling)
        thread.start()
        ran_beside = second_in.wait(0.5)
    thread.join(5)
    root.release()
    assert not ran_beside, "two children of one parent ran cells at once under a cap of one"
    assert children.lanes_in_use() == 0, "a lane was left after its session ended"


def test_closing_a_parent_does_not_let_its_children_overrun_the_cell_cap(
        start_daemon: Callable[..., RunningDaemon]) -> None:
    """docs/daemon.md, Limits 2: a tenant runs at most its cells at once, ``rlm_query``
    children included, one child at a time in the parent's lane. The tenant DELETEs its
    session while the cell that called ``rlm_query_batched(['a', 'b'])`` waits (the
    route's slot stays held by the cell's thread, the children go on): from then on the
    two children's cells overlapped under a cap of one. Since a close abandons the call
    its cell waits on (security.md 23b), the children are closed with it: no child cell
    starts after the close, and none ever ran beside another."""
    lock = threading.Lock()
    spans: set[tuple[float, float]] = set()

    def script(prompt: str) -> str:
        if CHILD_TASK not in prompt:
            return "FINAL(parent)"
        seen = {(float(s), float(e)) for s, e in SPAN.findall(prompt)}
        with lock:
            spans.update(seen)
        return "FINAL(done)" if len(seen) >= 4 else _span_cell(0.5)

    running = start_daemon(lm=ScriptedLM(script), limits=DaemonLimits(cells_per_tenant=1))
    with running.client("alice") as alice:
        info = alice.create_session()

        def parent_cell() -> None:
            # the session is closed under it: an error is expected
            with running.client("alice") as again, contextlib.suppress(RlmboxError):
                again.exec(info["id"], "print(rlm_query_batched(['a', 'b']))")

        worker = threading.Thread(target=parent_cell)
        worker.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:   # the children are running their cells
            with lock:
                if len(spans) >= 2:
                    break
            time.sleep(0.05)
        alice.close_session(info["id"])
        closed_at = time.time()
        worker.join(60)
        time.sleep(1.5)   # a child cell still going would record its span by now
    assert len(spans) >= 2, spans
    late = sorted(span for span in spans if span[0] >= closed_at)
    assert not late, f"child cells started after the close: {late}"
    at_once = _most_at_once(spans)
    assert at_once <= 1, f"{at_once} child cells ran at once under a cap of one: {sorted(spans)}"


def test_an_abandoned_rlm_query_stops_its_whole_subtree(
        start_daemon: Callable[..., RunningDaemon]) -> None:
    """docs/daemon.md, Limits 2 (a child's wait and work are bounded "by its caller's wall
    time") and security.md ("the cell, the session and the caller are freed at the
    deadline ... an ``rlm_query`` child is closed"). The root cell (2 s) calls
    ``rlm_query``; the child's cell calls ``rlm_query`` again; the grandchild runs cells
    of 0.5 s. At the root's deadline the child is closed, but the child's cell thread
    waits on the grandchild's call under the *child's* cell deadline, so the grandchild
    keeps running sandbox cells after the root cell has returned, taking the tenant's
    freed slot or its closed parent's lane."""
    lock = threading.Lock()
    spans: set[tuple[float, float]] = set()
    child_steps: list[str] = []

    def script(prompt: str) -> str:
        if CHILD_TASK not in prompt:
            return "FINAL(root)"
        if "(str, 5 characters)" in prompt:   # the child ('child'): one cell that recurses
            with lock:
                child_steps.append(prompt)
                first = len(child_steps) == 1
            return "```repl\nprint(rlm_query('grandchild'))\n```" if first else "FINAL(child)"
        seen = {(float(s), float(e)) for s, e in SPAN.findall(prompt)}
        with lock:
            spans.update(seen)
        return _span_cell(0.5)   # the grandchild: cells until its steps run out

    running = start_daemon(lm=ScriptedLM(script), limits=DaemonLimits(cells_per_tenant=1))
    with running.client("alice") as alice:
        info = alice.create_session()
        result = alice.exec(info["id"], "print(rlm_query('child'))", timeout=2)
        returned = time.time()
        assert result.status != "ok", result
        alice.close_session(info["id"])
        time.sleep(3)
    with lock:
        late = sorted(s for s, _ in spans if s > returned + 0.5)
    assert not late, (f"the grandchild started {len(late)} cells after the root cell "
                      f"returned (at {returned}): {late}")
