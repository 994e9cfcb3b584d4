"""Scripted models the cluster tests ship to node actors: module-level, so Ray pickles
them by reference and the nodes import this module."""

from __future__ import annotations

from typing import Any

from rlmbox.lm.scripted import ScriptedLM

CHILD_RLM = ("```repl\n"
             "r = llm_query_batched([context + ' a', context + ' b'])\n"
             "FINAL(' | '.join(r))\n"
             "```")


def child_rlm(prompt: str) -> str:
    """A child RLM's root model: one cell of two sub-calls, then its answer."""
    return CHILD_RLM


def shout(text: str) -> str:
    """A tool: runs host-side (on the node, for a cluster session)."""
    return text.upper() + "!"


class KeyedLM:
    """An LM provider holding a key (as the hosted ones do), built on the node by its
    factory; it answers "fine" and declares its key as a secret for the audit redactor."""

    name = "keyed"
    model = "scripted"

    def __init__(self, api_key: str) -> None:
        self.secrets = (api_key,)
        self._inner = ScriptedLM(default="fine")

    def complete(self, prompt: str, *, model: str | None = None) -> Any:
        return self._inner.complete(prompt, model=model)
