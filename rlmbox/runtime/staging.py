"""Putting a context where a sandbox can read it: written once on the host, staged by the
backend, never sent through frames (a 1 GB context would not fit one)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

from rlmbox.errors import PolicyError
from rlmbox.runtime.ascii_view import ascii_view
from rlmbox.sandboxes.base import Sandbox
from rlmbox.sandboxes.bundle import cache_root


def private_contexts_dir() -> Path:
    """Host-only (0700) home of contexts: sandboxes reach theirs through a stage link."""
    path = cache_root() / "contexts"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


#: Characters encoded per write: the text goes to the file a slice at a time, never as one
#: encoded copy of the whole (at 1 GB that copy alone cost more than the rest of the load).
#: Small enough that each slice and its bytes reuse the same heap memory (below malloc's
#: mmap threshold, so no fresh pages to fault in per chunk).
CHUNK_CHARS = 1 << 15


#: Below this many characters a context is decoded as it always was: the ``reserve`` frame
#: and a mapped string pay off only where touching fresh pages is most of the load.
RESERVE_FROM_CHARS = 1 << 20


def _announce(sandbox: Sandbox, context: Any, memory_mb: int) -> None:
    """Tells the agent a large context's length and that it is ASCII, so it maps the file
    as the string rather than decoding a copy (agent/context_map.py). A mapped string is
    the host's page cache, not the sandbox's memory: the sandbox counts it against its
    memory limit (``Sandbox.count_mapped``) or it is not announced, and a context larger
    than the limit is not announced either, so it is decoded and fails to load as it
    always did."""
    if (isinstance(context, str) and RESERVE_FROM_CHARS <= len(context) <= memory_mb << 20
            and context.isascii() and sandbox.count_mapped(len(context))):
        sandbox.send({"t": "reserve", "chars": len(context)})


def stage_context(sandbox: Sandbox, context: Any, staging: Path, *,
                  memory_mb: int) -> dict[str, str]:
    """Writes ``context`` to a file under ``staging`` and has the sandbox stage it;
    ``memory_mb`` is the sandbox's memory limit, which the context must fit.

    Returns the agent's view: the path inside the sandbox and the kind (``str``/``json``).
    """
    if isinstance(context, str) and type(context) is not str:
        # a subclass's len() or isascii() may disagree with its characters: the file and
        # the reservation are made from an exact copy of them
        context = str.__str__(context)
    _announce(sandbox, context, memory_mb)
    if isinstance(context, str):
        kind, suffix, text = "str", ".txt", context
    elif isinstance(context, dict | list):
        try:
            kind, suffix, text = "json", ".json", json.dumps(context)
        except (TypeError, ValueError) as exc:
            raise PolicyError(f"the context must be JSON-serializable: {exc}") from exc
    else:
        raise TypeError(f"context must be a str, dict or list, not {type(context).__name__}")
    fd, name = tempfile.mkstemp(suffix=suffix, dir=staging)
    try:
        with os.fdopen(fd, "wb") as handle:
            _write_text(handle, text)
        os.chmod(name, 0o644)
        inside = sandbox.stage(Path(name), "context" + suffix)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)
    return {"path": inside, "kind": kind}


def _write_text(handle: BinaryIO, text: str) -> None:
    """Writes ``text`` as UTF-8: an ASCII ``str`` straight from its own characters, any
    other a slice at a time. ``text`` stays referenced here while its view is read."""
    view = ascii_view(text) if len(text) >= RESERVE_FROM_CHARS else None
    if view is not None:
        for start in range(0, len(view), CHUNK_CHARS):
            handle.write(view[start:start + CHUNK_CHARS])
        return
    for start in range(0, len(text), CHUNK_CHARS):
        handle.write(_utf8(text[start:start + CHUNK_CHARS], start))


def _utf8(piece: str, offset: int) -> bytes:
    """``piece`` (starting at character ``offset`` of the context) as UTF-8; a lone
    surrogate, which UTF-8 cannot hold, is the caller's error, said where."""
    try:
        return piece.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise PolicyError(f"the context must be Unicode text: a lone surrogate at character "
                          f"{offset + exc.start}") from exc
