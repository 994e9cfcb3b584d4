"""Scripted models the cluster tests ship to node actors: module-level, so Ray pickles
them by reference and the nodes import this module."""

from __future__ import annotations

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
