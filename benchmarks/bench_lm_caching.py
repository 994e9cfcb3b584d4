"""Prompt caching in the RLM root loop: tokens billed with and without it.

    PYTHONPATH=. python benchmarks/bench_lm_caching.py [--turns 10] [--output-chars 2000]

A 10-turn scripted trajectory, shaped as ``run_rlm`` sends it (a system prompt with the
task, then the root's replies and the cells' outputs as turns, each request the previous
one plus two turns), played against the local test double of Anthropic's Messages API
(tests/lm/fake_api.py: one character a token, Anthropic's cache accounting) by the real
``AnthropicLM`` over real sockets, once with ``cache_prefix`` and once without. Prices are
Claude Haiku 4.5's list prices from rlmbox/lm/prices.py. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rlmbox.lm.anthropic import AnthropicLM
from rlmbox.lm.base import LMRequest, Turn
from rlmbox.runtime.rlm_loop import FIRST_TURN, SYSTEM_PROMPT
from tests.lm.fake_api import FakeLMServer

MODEL = "claude-haiku-4-5"


@dataclass
class Totals:
    input_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


def trajectory(turns: int, output_chars: int, *, cached: bool) -> Totals:
    key = f"bench-{secrets.token_hex(8)}"
    server = FakeLMServer(key, answer=lambda prompt: "```repl\nprint(context[:2000])\n```")
    try:
        lm = AnthropicLM(MODEL, api_key=key, base_url=server.url)
        system = SYSTEM_PROMPT.format(context_kind="str", context_chars=1_000_000,
                                      task="Find the secret code in the log.")
        history = [Turn("user", FIRST_TURN)]
        totals = Totals()
        for step in range(turns):
            done = lm.respond(LMRequest(tuple(history), system=system, cache_prefix=cached))
            totals.input_tokens += done.input_tokens
            totals.cache_write_tokens += done.cache_write_tokens
            totals.cache_read_tokens += done.cache_read_tokens
            totals.output_tokens += done.output_tokens
            totals.cost_usd += done.cost_usd
            output = f"[cell]\nprint(context[:2000])\n[output]\n{step:04d}" + \
                "log line\n" * (output_chars // 9)
            history += [Turn("assistant", done.text), Turn("user", output)]
        lm.close()
        return totals
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--output-chars", type=int, default=2000)
    args = parser.parse_args()
    plain = trajectory(args.turns, args.output_chars, cached=False)
    cached = trajectory(args.turns, args.output_chars, cached=True)
    print(f"## prompt caching: {args.turns}-turn root trajectory, {MODEL} list prices\n")
    print("| run | input tokens | of which cache writes | of which cache reads "
          "| output tokens | cost (USD) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, t in (("without caching", plain), ("with caching", cached)):
        print(f"| {name} | {t.input_tokens:,} | {t.cache_write_tokens:,} | "
              f"{t.cache_read_tokens:,} | {t.output_tokens:,} | {t.cost_usd:.6f} |")
    saving = 1 - cached.cost_usd / plain.cost_usd if plain.cost_usd else 0.0
    same = "the same" if cached.input_tokens == plain.input_tokens else "DIFFERENT"
    print(f"\ncaching saves {saving:.0%} of the cost; {same} input tokens were sent")


if __name__ == "__main__":
    main()
