"""Connecting to an engine that does not answer: a clear refusal, and nothing left open.

Needs no engine: it aims at a Unix socket nobody listens on (a path in its own tmp dir).
"""

from __future__ import annotations

import gc
import warnings
from pathlib import Path

import pytest

from rlmbox.errors import SandboxUnavailable
from rlmbox.sandboxes.docker.engine import connect


def test_an_engine_that_does_not_answer_is_refused_and_its_client_closed(
        tmp_path: Path) -> None:
    """The SDK client opened before the failed ping must be closed: ``rlmbox doctor``, the
    daemon's reconcile and every refused Docker session went through here, and each left a
    socket to the garbage collector (a ResourceWarning that failed an unrelated test)."""
    dead = tmp_path / "docker.sock"
    dead.touch()   # a path that exists and refuses connections
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with pytest.raises(SandboxUnavailable, match="no Docker engine answers"):
            connect(f"unix://{dead}", timeout=5)
        gc.collect()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == []
