"""Fixtures of the attack corpus; the machinery lives in ``harness.py`` so tests can import it."""

from __future__ import annotations

from .harness import backend, host, runtime, runtimes

__all__ = ["backend", "host", "runtime", "runtimes"]
