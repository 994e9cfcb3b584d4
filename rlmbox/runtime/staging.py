"""Putting a context where a sandbox can read it: written once on the host, staged by the
backend, never sent through frames (a 1 GB context would not fit one)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from rlmbox.errors import PolicyError
from rlmbox.sandboxes.base import Sandbox
from rlmbox.sandboxes.bundle import cache_root


def private_contexts_dir() -> Path:
    """Host-only (0700) home of contexts: sandboxes reach theirs through a stage link."""
    path = cache_root() / "contexts"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def stage_context(sandbox: Sandbox, context: Any, staging: Path) -> dict[str, str]:
    """Writes ``context`` to a file under ``staging`` and has the sandbox stage it.

    Returns the agent's view: the path inside the sandbox and the kind (``str``/``json``).
    """
    if isinstance(context, str):
        kind, suffix, data = "str", ".txt", context.encode("utf-8")
    elif isinstance(context, dict | list):
        try:
            kind, suffix, data = "json", ".json", json.dumps(context).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise PolicyError(f"the context must be JSON-serializable: {exc}") from exc
    else:
        raise TypeError(f"context must be a str, dict or list, not {type(context).__name__}")
    fd, name = tempfile.mkstemp(suffix=suffix, dir=staging)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(name, 0o644)
        inside = sandbox.stage(Path(name), "context" + suffix)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)
    return {"path": inside, "kind": kind}
