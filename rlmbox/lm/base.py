"""The LM provider seam: one synchronous completion call, brokered on the host.

API keys live in provider objects on the host and never enter a sandbox; the sandbox
only ever sees the completion text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Completion:
    """One completion and what it cost, as the provider measured it."""

    text: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


class LMProvider(Protocol):
    """Anything that turns a prompt into a completion.

    ``model`` is the model a completion uses when the caller names none: the host binds
    it into the call's arguments before the policy decides, so a rule on ``model`` sees it.
    """

    name: str
    model: str

    def complete(self, prompt: str, *, model: str | None = None) -> Completion: ...


def estimate_tokens(text: str) -> int:
    """A provider-independent estimate (4 characters a token) for offline providers."""
    return max(1, (len(text) + 3) // 4)
