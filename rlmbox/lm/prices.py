"""What a completion costs, in USD, so a policy's cost budget counts real money.

Fail closed: a provider refuses a model it has no price for, unless the caller says
``allow_unpriced=True`` (a local server, a free tier) and so accepts that such calls count
0 USD against the budget. A budget must never silently count 0 for a paid model.

Prices are USD per million tokens, Anthropic's published list prices for standard
(non-batch) requests, with the 5-minute prompt-cache write (1.25x input) and cache-hit
(0.1x input) rates. Sources, checked 2026-11: the pricing page
https://platform.claude.com/docs/en/about-claude/pricing (Opus 4.6, 4.5, 4.1, 4; the cache
multipliers), its earlier copy https://docs.anthropic.com/en/docs/about-claude/pricing
(Sonnet 4 and its long-context rates, Haiku 3.5, Haiku 3), and the model pages
https://platform.claude.com/docs/en/models/sonnet-4-6/overview and
https://platform.claude.com/docs/en/models/haiku-4-5/overview. Sonnet 4.5 was dropped: no
official page at hand confirmed its rates. They go stale: pass ``prices={...}`` to a
provider to override or extend them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from rlmbox.errors import LMError


@dataclass(frozen=True)
class Price:
    """USD per million input and output tokens. ``long_*`` apply to the whole request
    when its input exceeds ``long_threshold`` tokens (Anthropic's long-context rates).

    Cache writes and reads have rates of their own; unset, they cost the full input rate
    (an over-count, never an under-count). The long-context rates scale them alike.
    """

    input_per_mtok: float
    output_per_mtok: float
    long_input_per_mtok: float | None = None
    long_output_per_mtok: float | None = None
    long_threshold: int = 200_000
    cache_write_per_mtok: float | None = None
    cache_read_per_mtok: float | None = None

    def __post_init__(self) -> None:
        rates = (self.input_per_mtok, self.output_per_mtok,
                 self.long_input_per_mtok or 0.0, self.long_output_per_mtok or 0.0,
                 self.cache_write_per_mtok or 0.0, self.cache_read_per_mtok or 0.0)
        if not all(isinstance(r, int | float) and 0 <= r < float("inf") for r in rates):
            raise LMError(f"a price must be a finite, non-negative number: {self}")

    def cost(self, input_tokens: int, output_tokens: int, *, cache_write_tokens: int = 0,
             cache_read_tokens: int = 0) -> float:
        """``input_tokens`` counts every input token, the cached ones included."""
        if cache_write_tokens + cache_read_tokens > input_tokens:
            raise LMError("cache tokens cannot exceed the input tokens they are part of")
        rate_in, rate_out = self.input_per_mtok, self.output_per_mtok
        if input_tokens > self.long_threshold:
            rate_in = self.long_input_per_mtok or rate_in
            rate_out = self.long_output_per_mtok or rate_out
        scale = rate_in / self.input_per_mtok if self.input_per_mtok else 1.0
        rate_write = scale * (self.cache_write_per_mtok if self.cache_write_per_mtok
                              is not None else self.input_per_mtok)
        rate_read = scale * (self.cache_read_per_mtok if self.cache_read_per_mtok
                             is not None else self.input_per_mtok)
        fresh = input_tokens - cache_write_tokens - cache_read_tokens
        return (fresh * rate_in + cache_write_tokens * rate_write
                + cache_read_tokens * rate_read + output_tokens * rate_out) / 1_000_000


def _claude(input_per_mtok: float, output_per_mtok: float,
            long_input_per_mtok: float | None = None,
            long_output_per_mtok: float | None = None) -> Price:
    """A Claude price: 5-minute cache writes at 1.25x input, cache hits at 0.1x."""
    return Price(input_per_mtok, output_per_mtok, long_input_per_mtok, long_output_per_mtok,
                 cache_write_per_mtok=input_per_mtok * 1.25,
                 cache_read_per_mtok=input_per_mtok * 0.1)


_SONNET_4 = _claude(3.0, 15.0, 6.0, 22.5)

# Keys are model ids without their date suffix: "claude-haiku-4-5" prices
# "claude-haiku-4-5" and "claude-haiku-4-5-20251001", but not "claude-haiku-4-5-x".
CLAUDE_PRICES: Mapping[str, Price] = {
    "claude-opus-4-6": _claude(5.0, 25.0),
    "claude-sonnet-4-6": _claude(3.0, 15.0),
    "claude-opus-4-5": _claude(5.0, 25.0),
    "claude-haiku-4-5": _claude(1.0, 5.0),
    "claude-opus-4-1": _claude(15.0, 75.0),
    "claude-opus-4": _claude(15.0, 75.0),
    "claude-opus-4-0": _claude(15.0, 75.0),
    "claude-sonnet-4": _SONNET_4,
    "claude-sonnet-4-0": _SONNET_4,
    "claude-3-5-haiku": Price(0.8, 4.0, cache_write_per_mtok=1.0, cache_read_per_mtok=0.08),
    "claude-3-haiku": Price(0.25, 1.25, cache_write_per_mtok=0.3, cache_read_per_mtok=0.03),
}

_DATED = re.compile(r"^(?P<base>.+?)-(?:\d{8}|latest)$")


class Pricer:
    """Prices completions for one provider; refuses unpriced models unless allowed."""

    def __init__(self, table: Mapping[str, Price], overrides: Mapping[str, Price] | None,
                 *, allow_unpriced: bool) -> None:
        self._table = {**table, **(overrides or {})}
        self.allow_unpriced = allow_unpriced

    def price(self, model: str) -> Price | None:
        """The model's price (exact id, or its id without a date suffix), else None."""
        if model in self._table:
            return self._table[model]
        dated = _DATED.match(model)
        return self._table.get(dated.group("base")) if dated else None

    def check(self, model: str) -> None:
        """Raises LMError if calls to ``model`` could not be counted against a budget."""
        if self.price(model) is None and not self.allow_unpriced:
            raise LMError(
                f"no price is known for model {model!r}, so its cost cannot be counted "
                "against a USD budget; pass prices={model: Price(...)} or, to count it as "
                "0 USD on purpose, allow_unpriced=True (CLI: --allow-unpriced)")

    def cost(self, model: str, input_tokens: int, output_tokens: int, *,
             cache_write_tokens: int = 0, cache_read_tokens: int = 0) -> float:
        self.check(model)
        price = self.price(model)
        return price.cost(input_tokens, output_tokens, cache_write_tokens=cache_write_tokens,
                          cache_read_tokens=cache_read_tokens) if price else 0.0
