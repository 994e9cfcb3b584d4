"""How a host value becomes a sandbox variable: inline as source text when small, else as a
staged read-only file the sandbox loads, recorded in the audit log by digest.

Both adapters hand the sandbox values after it started (DSPy's per-cell variables, rlms'
later contexts and histories); the sandbox has no other way in, since its network is off
and its file system private.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path

from rlmbox.runtime.contract import SessionLike
from rlmbox.runtime.events import AuditSink
from rlmbox.runtime.session import Session
from rlmbox.sandboxes.bundle import cache_root

INLINE_LIMIT = 64 * 1024      # larger values travel as staged files, not as code
LOADER_SETUP = '''
def _rlmbox_load(path, kind):
    with open(path, encoding="utf-8") as handle:
        return handle.read() if kind == "text" else __import__("json").load(handle)
'''


def digest_of(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def value_source(session: SessionLike, audit: AuditSink | None, name: str, text: str, *,
                 kind: str = "json", event: str = "adapter.value") -> str:
    """A Python expression that rebuilds ``text`` (JSON, or plain text when ``kind`` is
    ``"text"``) inside the sandbox; needs :data:`LOADER_SETUP` to have run there.

    A session on another machine (a cluster node's) cannot be handed a staged file from
    here, so its values always go inline, in the cell's code (bounded by the frame cap).

    ``repr`` of a str is a valid Python literal whatever the text holds, so no value can
    break out of the expression it is placed in.
    """
    if len(text) <= INLINE_LIMIT or audit is None or not isinstance(session, Session):
        return inline_source(text, kind)
    digest = digest_of(text)
    inside = _stage(session, f"{name}-{digest[:16]}.{'txt' if kind == 'text' else 'json'}",
                    text)
    audit.append(event, session=session.id, parent=session.parent, depth=session.depth,
                 tenant=session.tenant, name=name, bytes=len(text.encode("utf-8")),
                 sha256=digest)
    return f"_rlmbox_load({inside!r}, {kind!r})"


def inline_source(text: str, kind: str = "json") -> str:
    """The expression that rebuilds ``text`` from the cell's own code (no staged file)."""
    return repr(text) if kind == "text" else f"__import__('json').loads({text!r})"


def json_text(value: object) -> str:
    """``value`` as strict JSON (no NaN), or ``TypeError``/``ValueError``."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def _stage(session: Session, filename: str, text: str) -> str:
    """Copies ``text`` into the sandbox as a read-only file; returns its path inside."""
    directory = cache_root() / "contexts"
    directory.mkdir(parents=True, exist_ok=True)
    fd, path = tempfile.mkstemp(suffix=".staged", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(path, 0o644)
        return session.sandbox.stage(Path(path), filename)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
