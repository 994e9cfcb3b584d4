"""Review (review-seam): attacks on the daemon's input handling and limits that succeed
today. Each test performs the attack and asserts the documented promise; it is marked
``xfail(strict=True)`` until fixed (then remove the mark).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from rlmbox.audit.reader import iter_records
from rlmbox.daemon.app import TARPIT_S
from rlmbox.daemon.limits import DaemonLimits
from rlmbox.errors import DaemonError
from rlmbox.lm.scripted import ScriptedLM

from .conftest import RunningDaemon


def test_a_context_with_a_lone_surrogate_is_a_4xx(http: httpx.Client) -> None:
    """docs/daemon.md: bad input is a 4xx, never a 5xx. ``"\\ud800"`` is valid JSON and
    passes validation; staging it as the context fails to encode, and the daemon answers
    500 (the same surrogate inside a list or as a key is accepted)."""
    response = http.post("/v1/sessions", content=b'{"context": "\\ud800"}')
    if response.status_code == 201:
        http.delete(f"/v1/sessions/{response.json()['id']}")
    assert response.status_code < 500, response.text
    assert http.get("/v1/health").status_code == 200


def _refusals(running: RunningDaemon) -> list[dict[str, Any]]:
    running.daemon._audit.sync()
    return [r for r in iter_records(running.daemon.audit_dir)
            if r.get("event") == "request.refused"]


def test_a_stream_refused_for_load_is_audited(
        start_daemon: Callable[..., RunningDaemon]) -> None:
    """docs/daemon.md, Limits 4 and 5: refusals for load are paused and audited as
    ``request.refused``. A ``POST .../exec`` over the tenant's cells is; the same refusal
    on ``GET .../exec/stream`` (taken after the upgrade) was an error message only."""
    running = start_daemon(limits=DaemonLimits(cells_per_tenant=1))
    with running.client("alice") as alice:
        one, two = alice.create_session(), alice.create_session()
        started = threading.Event()

        def sleepy() -> None:
            started.set()
            alice_too = running.client("alice")
            with alice_too:
                alice_too.exec(one["id"], "import time; time.sleep(3)")

        worker = threading.Thread(target=sleepy)
        worker.start()
        started.wait(10)
        time.sleep(1.0)   # the slow cell holds alice's only slot by now
        asked = time.monotonic()
        with pytest.raises(DaemonError) as refused:
            alice.exec_stream(two["id"], "print(2)", on_output=lambda s, t: None)
        assert refused.value.type == "TooManyCells"
        assert time.monotonic() - asked >= TARPIT_S * 0.9   # the refusal took the pause
        worker.join(60)
        for sid in (one["id"], two["id"]):
            alice.close_session(sid)
    routes = {(e["route"], e["error"]) for e in _refusals(running) if e["tenant"] == "alice"}
    assert ("/v1/sessions/{id}/exec/stream", "TooManyCells") in routes, routes


# the child's cell reports when it ran (wall clock: the host and the sandbox share it)
CHILD_CELL = ("```repl\nimport time\nt0 = time.time()\ntime.sleep(1.5)\n"
              "print('span', t0, time.time())\n```")
SPAN = re.compile(r"span ([0-9.]+) ([0-9.]+)")


def test_rlm_query_children_count_against_the_tenants_cells(
        start_daemon: Callable[..., RunningDaemon]) -> None:
    """docs/daemon.md: a tenant runs at most ``--max-cells-per-tenant`` cells (and
    sandbox starts) at once. With a cap of one, one cell calling ``rlm_query_batched``
    with four prompts runs four child sandboxes' cells at the same time."""
    lock = threading.Lock()
    spans: list[tuple[float, float]] = []

    def script(prompt: str) -> str:
        marker = prompt.split("Task: Answer the request given in `context`.", 1)
        if len(marker) == 1:
            return "FINAL(parent)"
        ran = SPAN.search(prompt)
        if ran is None:   # first step: run the cell; second: it reported when it ran
            return CHILD_CELL
        with lock:
            spans.append((float(ran.group(1)), float(ran.group(2))))
        return "FINAL(done)"

    running = start_daemon(lm=ScriptedLM(script), limits=DaemonLimits(cells_per_tenant=1))
    with running.client("alice") as alice:
        info = alice.create_session()
        result = alice.exec(info["id"], "print(rlm_query_batched(['a', 'b', 'c', 'd']))")
        assert result.status == "ok", result.error
        alice.close_session(info["id"])
    assert len(spans) == 4
    # the most cells that ran at one moment: some cell's start inside others' spans
    at_once = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
    assert at_once <= 1, f"{at_once} child cells ran at once under a cap of one cell: {spans}"


FLOOD_INVALID_CALLS = """
for i in range(24):
    try:
        llm_query('q', **{'k%d' % i + 'Z' * 1_000_000: 1})
    except TypeError:
        pass
print('done')
"""


def test_one_cell_cannot_overshoot_the_audit_quota_by_megabytes(
        start_daemon: Callable[..., RunningDaemon]) -> None:
    """docs/daemon.md, Limits 6: a cell already running may overshoot the tenant's audit
    quota by what it writes, "bounded by the policy's output cap and call budget". 24
    calls with a 1 MB keyword name are refused before the budget (invalid) and each is
    recorded with the name in full: 24 MB from a cell whose output cap is 64 KiB."""
    running = start_daemon(limits=DaemonLimits(audit_bytes_per_tenant=200_000),
                           index_every_s=0.05)
    with running.client("alice") as alice:
        info = alice.create_session()
        result = alice.exec(info["id"], FLOOD_INVALID_CALLS)
        assert result.stdout == "done\n", result.error
        alice.close_session(info["id"])
    running.daemon._audit.sync()
    running.daemon._index.refresh()
    used = running.daemon._index.tenant_bytes("alice")
    assert used < 200_000 + 8 * 65536, f"one cell wrote {used} bytes to the audit log"
