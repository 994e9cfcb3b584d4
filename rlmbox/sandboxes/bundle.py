"""The agent bundle: the few standard-library-only files copied into every sandbox.

They are copied once per content hash into a world-readable cache directory, so a sandbox
running as an unprivileged uid can read them even when the package lives under a private
home directory, and a running sandbox never sees a half-updated file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from pathlib import Path

BUNDLE_FILES: tuple[str, ...] = (
    "agent.py", "protocol.py", "confine.py", "gated_context.py", "restricted_guards.py",
)
_SOURCE_DIR = Path(__file__).resolve().parent
_lock = threading.Lock()
_cached: Path | None = None


def bundle_digest() -> str:
    """SHA-256 over the bundle's files: names the bundle in audit events and image tags."""
    digest = hashlib.sha256()
    for name in BUNDLE_FILES:
        path = _SOURCE_DIR / name
        if path.exists():
            digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def cache_root() -> Path:
    """Where rlmbox keeps world-readable runtime files (agent bundles, staged contexts)."""
    override = os.environ.get("RLMBOX_CACHE_DIR")
    if override:
        return Path(override)
    if os.geteuid() == 0:
        return Path("/var/cache/rlmbox")
    return Path(tempfile.gettempdir()) / f"rlmbox-{os.geteuid()}"


def agent_bundle_dir() -> Path:
    """A read-only-for-others directory holding the bundle; created on first use."""
    global _cached  # noqa: PLW0603 - one bundle per process, computed once
    with _lock:
        if _cached is not None and _cached.exists():
            return _cached
        root = cache_root()
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o755)  # noqa: S103 - sandboxes (another uid) must traverse it
        target = root / f"agent-{bundle_digest()[:16]}"
        if not target.exists():
            staging = Path(tempfile.mkdtemp(prefix=".agent-", dir=root))
            for name in BUNDLE_FILES:
                source = _SOURCE_DIR / name
                if source.exists():
                    shutil.copyfile(source, staging / name)
                    os.chmod(staging / name, 0o644)
            os.chmod(staging, 0o755)  # noqa: S103 - read by the sandbox's uid
            try:
                staging.rename(target)
            except OSError:
                shutil.rmtree(staging, ignore_errors=True)  # another process won the race
        _cached = target
        return target
