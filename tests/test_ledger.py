"""The ledger: atomic reserve, commit, refund; never overspends under real threads."""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlmbox.errors import BudgetExceeded
from rlmbox.policies.model import Budgets, FunctionBudget, TreeBudget
from rlmbox.runtime.ledger import Ledger, Reservation


def ledger(functions: dict[str, FunctionBudget] | None = None, **tree: Any) -> Ledger:
    return Ledger(Budgets(tree=TreeBudget(**tree), functions=functions or {}))


def test_64_concurrent_reservations_admit_exactly_10() -> None:
    """64 real threads race for a budget of 10 calls: exactly 10 win, 54 get BudgetExceeded."""
    book = ledger(calls=10, max_concurrent=64)
    barrier = threading.Barrier(64)

    def attempt(_: int) -> Reservation | BudgetExceeded:
        barrier.wait()
        try:
            return book.reserve("llm_query_batched", depth=0, prompt_chars=10)
        except BudgetExceeded as exc:
            return exc

    with ThreadPoolExecutor(max_workers=64) as pool:
        results = list(pool.map(attempt, range(64)))
    admitted = [r for r in results if isinstance(r, Reservation)]
    refused = [r for r in results if isinstance(r, BudgetExceeded)]
    assert len(admitted) == 10
    assert len(refused) == 54
    assert {e.budget for e in refused} == {"tree.calls"}
    assert all(e.used == 10 and e.limit == 10 for e in refused)
    assert len({r.id for r in admitted}) == 10
    assert book.snapshot()["tree"]["calls"] == 10


def test_refund_returns_the_call() -> None:
    book = ledger(calls=1)
    first = book.reserve("llm_query", depth=0)
    with pytest.raises(BudgetExceeded):
        book.reserve("llm_query", depth=0)
    book.refund(first)
    second = book.reserve("llm_query", depth=0)
    book.commit(second, input_tokens=5)
    assert book.snapshot()["tree"] == {"calls": 1, "in_flight": 0, "input_tokens": 5,
                                       "output_tokens": 0, "cache_write_tokens": 0,
                                       "cache_read_tokens": 0, "cost_usd": 0.0}


def test_settle_twice_is_refused() -> None:
    """A reservation is committed or refunded once: no double charge, no double refund."""
    book = ledger()
    r = book.reserve("llm_query", depth=0)
    book.commit(r, output_tokens=3)
    with pytest.raises(ValueError, match="already settled"):
        book.commit(r, output_tokens=3)
    with pytest.raises(ValueError, match="already settled"):
        book.refund(r)
    assert book.snapshot()["tree"]["output_tokens"] == 3
    assert book.snapshot()["tree"]["calls"] == 1


def test_forged_reservation_is_refused() -> None:
    book = ledger()
    with pytest.raises(ValueError, match="unknown"):
        book.refund(Reservation(99, "llm_query", 0, 0))


def test_negative_usage_is_refused() -> None:
    book = ledger()
    r = book.reserve("llm_query", depth=0)
    with pytest.raises(ValueError, match="non-negative"):
        book.commit(r, input_tokens=-5)
    with pytest.raises(ValueError, match="non-negative"):
        book.commit(r, cost_usd=float("nan"))
    book.commit(r)


@pytest.mark.parametrize(("budget", "usage"), [
    ("input_tokens", {"input_tokens": 100}),
    ("output_tokens", {"output_tokens": 100}),
    ("cost_usd", {"cost_usd": 1.0}),
])
def test_spent_token_and_cost_budgets_refuse_next_call(budget: str,
                                                       usage: dict[str, Any]) -> None:
    limits: dict[str, Any] = {budget: 100 if budget != "cost_usd" else 1.0}
    book = ledger(**limits)
    book.commit(book.reserve("llm_query", depth=0), **usage)
    with pytest.raises(BudgetExceeded) as info:
        book.reserve("llm_query", depth=0)
    assert info.value.budget == f"tree.{budget}"
    assert info.value.used == info.value.limit


def test_depth_counts_the_child_of_a_spawning_call() -> None:
    book = ledger(max_depth=1)
    book.reserve("rlm_query", depth=0)          # child at depth 1: allowed
    book.reserve("llm_query", depth=1)          # a call from depth 1: allowed
    with pytest.raises(BudgetExceeded) as info:
        book.reserve("rlm_query", depth=1)      # child at depth 2: refused
    assert (info.value.budget, info.value.used, info.value.limit) == ("tree.max_depth", 2, 1)


def test_concurrency_limit_and_release() -> None:
    book = ledger(max_concurrent=2)
    a = book.reserve("llm_query", depth=0)
    book.reserve("llm_query", depth=0)
    with pytest.raises(BudgetExceeded, match="max_concurrent"):
        book.reserve("llm_query", depth=0)
    book.commit(a)
    book.reserve("llm_query", depth=0)


def test_prompt_chars_limit() -> None:
    book = ledger(max_prompt_chars=10)
    book.reserve("llm_query", depth=0, prompt_chars=10)
    with pytest.raises(BudgetExceeded) as info:
        book.reserve("llm_query", depth=0, prompt_chars=11)
    assert info.value.budget == "tree.max_prompt_chars"


def test_per_function_budget_is_all_or_nothing() -> None:
    """A refusal by the function budget leaves the tree budget untouched."""
    book = ledger({"rlm_query": FunctionBudget(calls=1)}, calls=5)
    book.reserve("rlm_query", depth=0)
    with pytest.raises(BudgetExceeded) as info:
        book.reserve("rlm_query", depth=0)
    assert info.value.budget == "rlm_query.calls"
    snap = book.snapshot()
    assert snap["tree"]["calls"] == 1
    assert snap["functions"]["rlm_query"]["calls"] == 1
    book.reserve("llm_query", depth=0)


def test_child_shares_the_ledger() -> None:
    book = ledger(calls=1)
    book.child().reserve("llm_query", depth=1)
    with pytest.raises(BudgetExceeded):
        book.reserve("llm_query", depth=0)


ops = st.lists(st.tuples(st.sampled_from(["reserve", "commit", "refund"]),
                         st.sampled_from(["llm_query", "rlm_query"]),
                         st.integers(0, 50)), max_size=60)


@settings(max_examples=50, deadline=None)
@given(st.lists(ops, min_size=2, max_size=4), st.integers(1, 12), st.integers(1, 200))
def test_prop_never_overspends_under_concurrency(programs: list[list[tuple[str, str, int]]],
                                                 calls: int, tokens: int) -> None:
    """Threads run random reserve/commit/refund programs; calls never pass the budget and the
    books balance: calls == commits + open reservations, in_flight == open reservations."""
    book = ledger({"rlm_query": FunctionBudget(calls=max(1, calls // 2))},
                  calls=calls, input_tokens=tokens, max_concurrent=3)
    committed = [0] * len(programs)
    still_open: list[list[Reservation]] = [[] for _ in programs]
    barrier = threading.Barrier(len(programs))

    def run(index: int) -> None:
        mine = still_open[index]
        barrier.wait()
        for op, fn, amount in programs[index]:
            if op == "reserve":
                with contextlib.suppress(BudgetExceeded):
                    mine.append(book.reserve(fn, depth=0))
                snap = book.snapshot()["tree"]
                assert snap["calls"] <= calls
                assert snap["in_flight"] <= 3
            elif mine:
                r = mine.pop()
                if op == "commit":
                    book.commit(r, input_tokens=amount)
                    committed[index] += 1
                else:
                    book.refund(r)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(programs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = book.snapshot()
    open_count = sum(len(m) for m in still_open)
    assert snap["tree"]["calls"] == sum(committed) + open_count <= calls
    assert snap["tree"]["in_flight"] == open_count
    assert snap["functions"].get("rlm_query", {"calls": 0})["calls"] <= max(1, calls // 2)
    # tokens may pass the limit only by calls admitted while it was not yet spent
    assert snap["tree"]["input_tokens"] <= tokens + 50 * 3


def test_a_counted_input_over_the_token_budget_is_refused_before_the_call() -> None:
    """Reserve the counted input: a call that would cross ``input_tokens`` never runs,
    even while another call's counted input is still in flight."""
    book = Ledger(Budgets(tree=TreeBudget(input_tokens=1000)))
    first = book.reserve("root_lm", depth=0, input_tokens=600)
    with pytest.raises(BudgetExceeded, match="would be exceeded") as caught:
        book.reserve("root_lm", depth=0, input_tokens=500)
    assert caught.value.budget == "tree.input_tokens"
    book.commit(first, input_tokens=550)   # the actual replaces the count
    book.commit(book.reserve("root_lm", depth=0, input_tokens=450), input_tokens=450)
    assert book.snapshot()["tree"]["input_tokens"] == 1000


def test_cache_tokens_are_counted_apart_and_inside_the_input() -> None:
    book = Ledger(Budgets())
    book.commit(book.reserve("root_lm", depth=0), input_tokens=100, cache_write_tokens=60,
                cache_read_tokens=30, cost_usd=0.5)
    tree = book.snapshot()["tree"]
    assert (tree["input_tokens"], tree["cache_write_tokens"], tree["cache_read_tokens"]) == \
        (100, 60, 30)


def test_an_abandoned_call_is_settled_yet_holds_its_slot_until_it_ends() -> None:
    """``abandon`` settles a reservation as a spent call (no refund, no second settle);
    its ``max_concurrent`` slot frees, and its late usage is charged, only when the call
    really ends (``finish_abandoned``)."""
    book = ledger(max_concurrent=1)
    r = book.reserve("llm_query", depth=0)
    book.abandon(r, input_tokens=2)
    assert book.open_reservations() == 0
    with pytest.raises(ValueError, match="already settled"):
        book.refund(r)
    assert book.free_slots("llm_query") == 0
    with pytest.raises(BudgetExceeded, match="max_concurrent"):
        book.reserve("llm_query", depth=0)
    book.finish_abandoned(r, input_tokens=5, output_tokens=1)
    assert book.free_slots("llm_query") == 1
    tree = book.snapshot()["tree"]
    assert (tree["calls"], tree["in_flight"], tree["input_tokens"], tree["output_tokens"],
            tree["cost_usd"]) == (1, 0, 7, 1, 0.0)
    with pytest.raises(ValueError, match="already settled"):
        book.finish_abandoned(r)


def test_hold_input_refuses_past_the_budget_and_is_released_at_settle() -> None:
    """A sub-call's count, held after admission: refused past the budget (nothing held),
    held while in flight, released at commit (the actual usage counts instead)."""
    ledger = Ledger(Budgets(tree=TreeBudget(input_tokens=100)))
    first = ledger.reserve("llm_query", depth=0)
    ledger.hold_input(first, 60)
    second = ledger.reserve("llm_query", depth=0)
    with pytest.raises(BudgetExceeded, match="input_tokens"):
        ledger.hold_input(second, 41)   # 60 held + 41 > 100
    ledger.hold_input(second, 40)       # the refused 41 held nothing
    ledger.commit(first, input_tokens=50)
    ledger.commit(second, input_tokens=10)
    third = ledger.reserve("llm_query", depth=0)
    with pytest.raises(BudgetExceeded, match="input_tokens"):
        ledger.hold_input(third, 41)    # 60 used + 41 > 100: the holds were released
    ledger.hold_input(third, 40)
    ledger.refund(third)
    assert ledger.open_reservations() == 0


def test_usage_of_one_function_is_the_snapshot_seen_from_it() -> None:
    """What one call's record shows (the tree and that function) equals the full
    snapshot narrowed to them, before the function was ever called and after."""
    book = ledger(calls=10, max_concurrent=4)
    assert book.usage_of("llm_query") == {"tree": book.snapshot()["tree"]}
    first = book.reserve("llm_query", depth=0, prompt_chars=3)
    book.commit(first, input_tokens=5, output_tokens=2, cost_usd=0.25)
    book.reserve("tool.x", depth=0)
    snapshot = book.snapshot()
    assert book.usage_of("llm_query") == {"tree": snapshot["tree"],
                                          "llm_query": snapshot["functions"]["llm_query"]}
    assert book.usage_of("llm_query")["llm_query"]["input_tokens"] == 5
    assert book.usage_of("tool.x")["tree"]["in_flight"] == 1
