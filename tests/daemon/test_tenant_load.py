"""Tenant B's cells stay fast while tenant A does the worst it can (issue 11, finding 10).

A real ``rlmbox serve`` with its default limits; A, in a process of its own, floods
session creation past its cap, keeps every cell slot it gets burning CPU and floods cheap
requests from several threads, retrying every refusal at once. B runs trivial cells at
25 a second. Five rounds alternate B alone and B under attack, so the machine's own load
(two cores shared with other work) hits both phases alike; each claim is checked on the
median of the rounds' ratios, so one round spoilt by outside load does not decide it.
200 cells a phase, so that a p99 is not simply the slowest cell.
The same measurement is ``benchmarks/bench_daemon_tenants.py``.
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

import pytest

# the benchmark scripts import each other by file name (MYPYPATH=benchmarks in test.sh)
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from bench_daemon_tenants import measure, median_ratio

pytestmark = pytest.mark.slow


def test_tenant_b_cells_stay_fast_while_a_attacks() -> None:
    rounds = measure(cells=200, rounds=5, ramp_s=2.0)
    # A really attacked: it opened sessions (each a sandbox start, the CPU-heavy part; its
    # one cell slot is mostly taken by those starts) and hit its cell and rate limits. The
    # counts are of all rounds: one round's A can keep one session open throughout (CI,
    # stop 26: 1 session in the last round)
    attack = collections.Counter[str]()
    for one in rounds:
        attack.update(one.attack)
    assert attack["session opened"] >= 2, attack
    assert attack["cell refused TooManyCells"] >= 1, attack
    assert attack["request refused RateLimited"] >= 1, attack
    per_round = [(round(r.alone.p50, 1), round(r.attacked.p50, 1), round(r.alone.p99, 1),
                  round(r.attacked.p99, 1)) for r in rounds]
    print(f"B p99 ratio, median of rounds: {median_ratio(rounds, 0.99):.1f}x; {per_round}")
    assert median_ratio(rounds, 0.5) <= 2, per_round
    # p99 within 2x is the goal and NOT kept (docs/daemon.md, Limits 8: 1.9x-3.3x on a
    # quiet machine, median 2.7x); 6x guards against the tails measured before (up to 14x
    # on an idle CI machine)
    assert median_ratio(rounds, 0.99) <= 6, per_round
