"""Cell helpers for the Docker backend tests (a module name unique across tests/)."""

from __future__ import annotations

import itertools
from typing import Any

from rlmbox.sandboxes.docker.backend import DockerSandbox

_ids = itertools.count()


def run(sandbox: DockerSandbox, code: str, timeout: float = 60.0) -> dict[str, Any]:
    """Runs one cell in the stand-in agent; returns its result frame."""
    cell = f"c{next(_ids)}"
    sandbox.send({"t": "exec", "id": cell, "code": code})
    frame = sandbox.recv(timeout)
    while frame is not None and frame["t"] == "output":
        frame = sandbox.recv(timeout)
    assert frame is not None, f"no result within {timeout} s"
    assert frame["t"] == "result"
    assert frame["id"] == cell
    return frame


def answer(sandbox: DockerSandbox, code: str, timeout: float = 60.0) -> Any:
    frame = run(sandbox, code, timeout)
    assert frame["status"] == "ok", frame.get("error")
    return frame.get("answer")
