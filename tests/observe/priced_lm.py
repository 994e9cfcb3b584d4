"""An LM with a fixed price per completion: the metrics and traces tests count its cost."""

from __future__ import annotations

from rlmbox.lm.base import Completion

TOKENS_IN = 10
TOKENS_OUT = 5
COST_USD = 0.25


class PricedLM:
    """Answers every prompt with ``answer``, at 10 tokens in, 5 out and $0.25."""

    name = "priced"

    def __init__(self, answer: str = "priced answer", model: str = "m-test") -> None:
        self.answer = answer
        self.model = model

    def complete(self, prompt: str, *, model: str | None = None) -> Completion:
        return Completion(text=self.answer, model=model or self.model,
                          input_tokens=TOKENS_IN, output_tokens=TOKENS_OUT, cost_usd=COST_USD)
