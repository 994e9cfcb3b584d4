"""The provider behind ``llm_query`` when nobody configured one: it refuses, by name.

A made-up placeholder answer would let a run look successful with no model behind it;
an error tells the model code (as ``HostCallError``) and the operator what to configure.
"""

from __future__ import annotations

from rlmbox.errors import LMError
from rlmbox.lm.base import Completion


class UnconfiguredLM:
    """Raises ``LMError`` on every call, with ``hint`` saying how to configure one."""

    name = "unconfigured"
    model = "unconfigured"   # what the policy sees for a call that will fail anyway

    def __init__(self, hint: str) -> None:
        self.hint = hint

    def complete(self, prompt: str, *, model: str | None = None) -> Completion:
        raise LMError(f"no LM provider is configured: {self.hint}")
