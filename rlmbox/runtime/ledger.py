"""Budgets of one session tree: atomic reserve before a call, commit or refund after.

One ledger serves the root session and every ``rlm_query`` descendant (they pass their
depth). A reservation counts as a spent call from the moment it is admitted, so N threads
racing for the last call cannot all pass: the check and the increment happen under one
lock. Token and cost budgets are known only after a call; a reservation is admitted while
they are not yet spent, so calls already in flight can carry usage past the limit by at
most their own size (bounded by ``max_concurrent``).

A call the host stopped waiting for (its cell ran out of wall time) is *abandoned*: its
reservation is settled at once as a spent call, yet it stays in flight, holding a
``max_concurrent`` slot, until its thread really ends; usage it reports then is charged.
So hung calls can neither be refunded by the sandbox nor pile up on the host without limit.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from typing import Any

from rlmbox.errors import BudgetExceeded
from rlmbox.policies.model import Budgets, FunctionBudget, TreeBudget

# Calling these starts a child session one level deeper than the caller.
SPAWNING_FUNCTIONS = frozenset({"rlm_query", "rlm_query_batched"})
# A budget on a function covers its batched form: each item counts against both.
BATCHED_FORMS: dict[str, str] = {"llm_query_batched": "llm_query",
                                 "rlm_query_batched": "rlm_query"}


@dataclass(frozen=True)
class Reservation:
    """An admitted call; settle it exactly once with ``commit`` or ``refund``."""

    id: int
    function: str
    depth: int
    prompt_chars: int
    input_tokens: int = 0   # counted before the call, held until it settles


@dataclass
class _Usage:
    calls: int = 0          # admitted and not refunded (in-flight calls included)
    in_flight: int = 0
    input_tokens: int = 0   # cache writes and reads included
    output_tokens: int = 0
    cost_usd: float = 0.0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    held_input_tokens: int = 0   # counted inputs of calls in flight

    def as_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "in_flight": self.in_flight,
                "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "cache_write_tokens": self.cache_write_tokens,
                "cache_read_tokens": self.cache_read_tokens,
                "cost_usd": round(self.cost_usd, 9)}


def _check(scope: str, limits: TreeBudget | FunctionBudget, usage: _Usage,
           child_depth: int, prompt_chars: int, input_tokens: int) -> None:
    def spent(budget: str, used: float, limit: float | None, unit: str) -> None:
        if limit is not None and used >= limit:
            raise BudgetExceeded(
                f"{scope} budget '{budget}' exhausted: {used:g} of {limit:g} {unit}",
                budget=f"{scope}.{budget}", used=used, limit=limit)

    if limits.max_depth is not None and child_depth > limits.max_depth:
        raise BudgetExceeded(
            f"{scope} budget 'max_depth' exceeded: depth {child_depth} > {limits.max_depth}",
            budget=f"{scope}.max_depth", used=child_depth, limit=limits.max_depth)
    if limits.max_prompt_chars is not None and prompt_chars > limits.max_prompt_chars:
        raise BudgetExceeded(
            f"{scope} budget 'max_prompt_chars' exceeded: prompt of {prompt_chars} characters "
            f"> {limits.max_prompt_chars}",
            budget=f"{scope}.max_prompt_chars", used=prompt_chars,
            limit=limits.max_prompt_chars)
    _check_input(scope, limits, usage, input_tokens)
    spent("calls", usage.calls, limits.calls, "calls used")
    spent("max_concurrent", usage.in_flight, limits.max_concurrent, "calls in flight")
    spent("input_tokens", usage.input_tokens, limits.input_tokens, "input tokens used")
    spent("output_tokens", usage.output_tokens, limits.output_tokens, "output tokens used")
    spent("cost_usd", usage.cost_usd, limits.cost_usd, "USD spent")


def _check_input(scope: str, limits: TreeBudget | FunctionBudget, usage: _Usage,
                 input_tokens: int) -> None:
    """Refuses ``input_tokens`` more (counted before sending) past the input budget."""
    held = usage.input_tokens + usage.held_input_tokens
    if input_tokens and limits.input_tokens is not None and \
            held + input_tokens > limits.input_tokens:
        raise BudgetExceeded(
            f"{scope} budget 'input_tokens' would be exceeded: {held} used or held + "
            f"{input_tokens} counted for this call > {limits.input_tokens}",
            budget=f"{scope}.input_tokens", used=held + input_tokens,
            limit=limits.input_tokens)


def _budget_names(function: str) -> tuple[str, ...]:
    single = BATCHED_FORMS.get(function)
    return (function, single) if single else (function,)


def _check_usage(input_tokens: int, output_tokens: int, cost_usd: float,
                 cache_write_tokens: int = 0, cache_read_tokens: int = 0) -> None:
    if min(input_tokens, output_tokens, cache_write_tokens, cache_read_tokens) < 0 \
            or not cost_usd >= 0:
        raise ValueError("usage must be non-negative numbers")


class Ledger:
    """Thread-safe budget accounting for one session tree."""

    def __init__(self, budgets: Budgets) -> None:
        self.budgets = budgets
        self._lock = threading.Lock()
        self._tree = _Usage()
        self._functions: dict[str, _Usage] = {}
        self._open: dict[int, Reservation] = {}
        self._abandoned: dict[int, Reservation] = {}
        self._ids = itertools.count(1)

    def reserve(self, function: str, *, depth: int, prompt_chars: int = 0,
                input_tokens: int = 0) -> Reservation:
        """Admits one call or raises ``BudgetExceeded`` naming the budget (all-or-nothing).

        ``input_tokens`` is the call's input as counted before it is sent: a call that
        would take an input-token budget past its limit is refused before any money is
        spent, and the count is held until the call settles (then the actual counts).

        ``depth`` is the caller's depth (root = 0); a spawning call (``rlm_query*``) is
        checked at the depth of the child it would create. An item of a batched form
        (``llm_query_batched``) is checked and counted under its single form too.
        """
        if depth < 0 or prompt_chars < 0 or input_tokens < 0:
            raise ValueError("depth, prompt_chars and input_tokens must not be negative")
        child_depth = depth + 1 if function in SPAWNING_FUNCTIONS else depth
        names = _budget_names(function)
        with self._lock:
            _check("tree", self.budgets.tree, self._tree, child_depth, prompt_chars,
                   input_tokens)
            usages = [self._functions.get(name) or _Usage() for name in names]
            for name, usage in zip(names, usages, strict=True):
                per_function = self.budgets.functions.get(name)
                if per_function is not None:
                    _check(name, per_function, usage, child_depth, prompt_chars,
                           input_tokens)
            for name, usage in zip(names, usages, strict=True):
                self._functions[name] = usage
            for u in (self._tree, *usages):
                u.calls += 1
                u.in_flight += 1
                u.held_input_tokens += input_tokens
            reservation = Reservation(next(self._ids), function, depth, prompt_chars,
                                      input_tokens)
            self._open[reservation.id] = reservation
            return reservation

    def hold_input(self, reservation: Reservation, input_tokens: int) -> None:
        """Holds ``input_tokens`` more for an admitted call, counted after it was admitted
        (a sub-call counts on its own deadline-bounded thread), or raises
        ``BudgetExceeded`` when they would cross an input-token budget: the call must
        then not be sent. Held until the call settles, as ``reserve``'s count is."""
        if input_tokens < 0:
            raise ValueError("input_tokens must not be negative")
        with self._lock:
            held = self._open.get(reservation.id)
            if held is None:
                raise ValueError(f"reservation {reservation.id} is unknown or settled")
            usages = self._usages(held)
            _check_input("tree", self.budgets.tree, usages[0], input_tokens)
            for name, usage in zip(_budget_names(held.function), usages[1:], strict=True):
                per_function = self.budgets.functions.get(name)
                if per_function is not None:
                    _check_input(name, per_function, usage, input_tokens)
            for usage in usages:
                usage.held_input_tokens += input_tokens
            self._open[held.id] = Reservation(held.id, held.function, held.depth,
                                              held.prompt_chars,
                                              held.input_tokens + input_tokens)

    def _usages(self, reservation: Reservation) -> list[_Usage]:
        """The usages a reservation counts against, tree first."""
        return [self._tree,
                *(self._functions[n] for n in _budget_names(reservation.function))]

    def _settle(self, reservation: Reservation,
                pending: dict[int, Reservation] | None = None) -> list[_Usage]:
        """The usages a reservation counts against (tree first), its in-flight call ended."""
        pending = self._open if pending is None else pending
        held = pending.pop(reservation.id, None)   # with what hold_input added
        if held is None:
            raise ValueError(f"reservation {reservation.id} is unknown or already settled")
        usages = self._usages(held)
        for usage in usages:
            usage.in_flight -= 1
            usage.held_input_tokens -= held.input_tokens
        return usages

    @staticmethod
    def _charge(usages: list[_Usage], input_tokens: int, output_tokens: int,
                cost_usd: float, cache_write_tokens: int = 0, cache_read_tokens: int = 0
                ) -> None:
        for u in usages:
            u.input_tokens += input_tokens
            u.output_tokens += output_tokens
            u.cost_usd += cost_usd
            u.cache_write_tokens += cache_write_tokens
            u.cache_read_tokens += cache_read_tokens

    def commit(self, reservation: Reservation, *, input_tokens: int = 0,
               output_tokens: int = 0, cost_usd: float = 0.0, cache_write_tokens: int = 0,
               cache_read_tokens: int = 0) -> None:
        """Records the measured usage of a finished call; the call stays counted.
        ``input_tokens`` includes the cache writes and reads (priced in ``cost_usd``)."""
        _check_usage(input_tokens, output_tokens, cost_usd, cache_write_tokens,
                     cache_read_tokens)
        with self._lock:
            self._charge(self._settle(reservation), input_tokens, output_tokens, cost_usd,
                         cache_write_tokens, cache_read_tokens)

    def abandon(self, reservation: Reservation, *, input_tokens: int = 0,
                output_tokens: int = 0, cost_usd: float = 0.0, cache_write_tokens: int = 0,
                cache_read_tokens: int = 0) -> None:
        """Settles the reservation of a call the host stopped waiting for: it counts as
        spent (a provider may bill it), with the usage measured so far, and stays in
        flight (its counted input still held) until ``finish_abandoned``."""
        _check_usage(input_tokens, output_tokens, cost_usd, cache_write_tokens,
                     cache_read_tokens)
        with self._lock:
            held = self._open.pop(reservation.id, None)
            if held is None:
                raise ValueError(f"reservation {reservation.id} is unknown or already settled")
            self._abandoned[held.id] = held
            self._charge(self._usages(held), input_tokens, output_tokens, cost_usd,
                         cache_write_tokens, cache_read_tokens)

    def finish_abandoned(self, reservation: Reservation, *, input_tokens: int = 0,
                         output_tokens: int = 0, cost_usd: float = 0.0,
                         cache_write_tokens: int = 0, cache_read_tokens: int = 0) -> None:
        """An abandoned call really ended: its slot frees and its late usage is charged."""
        _check_usage(input_tokens, output_tokens, cost_usd, cache_write_tokens,
                     cache_read_tokens)
        with self._lock:
            self._charge(self._settle(reservation, self._abandoned), input_tokens,
                         output_tokens, cost_usd, cache_write_tokens, cache_read_tokens)

    def open_reservations(self) -> int:
        """Reservations admitted and not yet settled (abandoned ones are settled)."""
        with self._lock:
            return len(self._open)

    def free_slots(self, function: str) -> int:
        """How many more calls of ``function`` may be in flight now (``max_concurrent``
        of the tree and of the function, or its single form); a batch starts no more
        workers than this."""
        with self._lock:
            free = self.budgets.tree.max_concurrent - self._tree.in_flight
            for name in _budget_names(function):
                per_function = self.budgets.functions.get(name)
                if per_function is not None and per_function.max_concurrent is not None:
                    own = self._functions.get(name) or _Usage()
                    free = min(free, per_function.max_concurrent - own.in_flight)
            return max(0, free)

    def refund(self, reservation: Reservation) -> None:
        """Returns the call of a reservation whose call failed before using anything."""
        with self._lock:
            for usage in self._settle(reservation):
                usage.calls -= 1

    def snapshot(self) -> dict[str, Any]:
        """Usage now, for audit events (``budget_before`` / ``budget_after``)."""
        with self._lock:
            return {"tree": self._tree.as_dict(),
                    "functions": {name: u.as_dict()
                                  for name, u in sorted(self._functions.items())}}

    def usage_of(self, function: str) -> dict[str, Any]:
        """The tree's usage and ``function``'s own (when it has any): what one call's
        record needs, without copying every function's usage as ``snapshot`` does."""
        with self._lock:
            own = self._functions.get(function)
            tree = self._tree.as_dict()
            return {"tree": tree} if own is None else {"tree": tree, function: own.as_dict()}

    def child(self) -> Ledger:
        """The ledger a child session uses: this one (the whole tree shares one)."""
        return self
