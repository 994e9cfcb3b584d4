"""Under ``rlmbox serve --ray`` the ``rlm_query`` children on a node take the tenant's cell
slots from the daemon's gate on the driver (``cluster/child_slots.py``), and give every
one back: after their root cell, and when their session closes while they wait their turn.
(That they are counted at all: ``test_review_s7c.py``
``test_rlm_query_children_count_against_the_tenants_cells_on_the_cluster``.)

The cap is two: a root cell holds one slot, its first child takes the other, the rest wait
for the root's lane. A slot kept after that shows as a 429 for one of two cells at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from rlmbox.errors import DaemonError, RlmboxError
from rlmbox.runtime.results import ExecResult
from tests.cluster.test_serve_on_ray import ServeOnRay, serving_rlm_children

CHILD_S = 1.0
# each child RLM's root model answers with one cell that sleeps, then ends it
CHILD_CELL = f"```repl\nimport time\ntime.sleep({CHILD_S})\nFINAL('done')\n```"
ADMITTED_WITHIN_S = 20.0


@pytest.fixture(scope="module")
def serve(ray_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeOnRay]:
    with serving_rlm_children(tmp_path_factory.mktemp("child-slots"), ray_cluster.address,
                              CHILD_CELL, cells_per_tenant=2) as daemon:
        yield daemon


def _two_cells_at_once(serve: ServeOnRay) -> list[str]:
    """Each of two sessions' cells' status (or the refusal's type), run at the same time."""
    with serve.client("alice") as alice:
        sessions = [alice.create_session()["id"] for _ in range(2)]
    outcomes: list[str] = []

    def run(sid: str) -> None:
        with serve.client("alice") as own:
            try:
                outcomes.append(own.exec(sid, "import time\ntime.sleep(1)").status)
            except DaemonError as exc:
                outcomes.append(exc.type)
            finally:
                own.close_session(sid)

    threads = [threading.Thread(target=run, args=(sid,)) for sid in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return outcomes


def test_after_a_cell_of_children_every_slot_is_back(serve: ServeOnRay) -> None:
    with serve.client("alice") as alice:
        sid = alice.create_session()["id"]
        result = alice.exec(sid, "print(rlm_query_batched(['a', 'b']))")
        alice.close_session(sid)
        assert result.status == "ok", result.error
        assert result.stdout.strip() == "['done', 'done']"
    # the children gave their slots back before their root cell ended: no retry
    assert _two_cells_at_once(serve) == ["ok", "ok"]


def test_children_waiting_their_turn_when_their_session_closes_hold_no_slot(
        serve: ServeOnRay) -> None:
    """The session closes while the first of four children runs on the free slot and three
    wait for the root's lane. Their slots all come back."""
    with serve.client("alice") as alice, serve.client("alice") as closer:
        sid = alice.create_session()["id"]
        outcome: list[ExecResult | RlmboxError] = []

        def run() -> None:
            try:
                outcome.append(alice.exec(sid, "rlm_query_batched(['a', 'b', 'c', 'd'])"))
            except RlmboxError as exc:
                outcome.append(exc)

        cell = threading.Thread(target=run)
        cell.start()
        time.sleep(CHILD_S * 1.5)   # the first child runs, the other three wait
        closer.close_session(sid)
        cell.join(60)
        assert not cell.is_alive()
        assert len(outcome) == 1
        assert not isinstance(outcome[0], ExecResult) or outcome[0].status != "ok", outcome
    # the slots come back as the closed cell's stream ends, which may be a moment later
    deadline = time.monotonic() + ADMITTED_WITHIN_S
    while (outcomes := _two_cells_at_once(serve)) != ["ok", "ok"]:
        assert time.monotonic() < deadline, outcomes
