"""The agent bundle: the few standard-library-only files copied into every sandbox.

They are copied once per content hash into a world-readable cache directory, so a sandbox
running as an unprivileged uid can read them even when the package lives under a private
home directory, and a running sandbox never sees a half-updated file. Their bytecode, for
this interpreter's version, is shipped beside them: sandboxes run with ``-B`` on a
read-only bundle, so without it every cold start compiles every module again (about 8 ms).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import py_compile
import shutil
import sys
import tempfile
import threading
from pathlib import Path

_PACKAGE_ROOT = Path(__file__).resolve().parent.parent   # the rlmbox package
_AGENT = "sandboxes/agent"
# (path in the bundle, path under the rlmbox package); the agent keeps its package paths,
# so its modules import each other the same way inside a sandbox as in the source tree.
BUNDLE_FILES: tuple[tuple[str, str], ...] = (
    ("agent.py", f"{_AGENT}/launch.py"),
    # not the agent's: the host runs it in a jail of its own to search a gated context
    ("context_search.py", "runtime/context_search.py"),
    ("rlmbox/sandboxes/protocol.py", "sandboxes/protocol.py"),
    ("rlmbox/sandboxes/cell_code.py", "sandboxes/cell_code.py"),
    ("rlmbox/sandboxes/process/confine.py", "sandboxes/process/confine.py"),
    *((f"rlmbox/{_AGENT}/{name}", f"{_AGENT}/{name}") for name in (
        "__init__.py", "main.py", "frame_io.py", "fds.py", "files.py", "pump.py", "reaper.py",
        "repl.py", "context_file.py", "context_map.py", "gated_context.py",
        "restricted_guards.py", "warm_compiler.py")),
)
# package markers with no code: the real ``rlmbox/__init__.py`` imports the host side
EMPTY_PACKAGES: tuple[str, ...] = (
    "rlmbox/__init__.py", "rlmbox/sandboxes/__init__.py", "rlmbox/sandboxes/process/__init__.py")
_lock = threading.Lock()
_cached: Path | None = None


def bundle_digest() -> str:
    """SHA-256 over the bundle's files: names the bundle in audit events and image tags."""
    digest = hashlib.sha256()
    for inside, source in BUNDLE_FILES:
        digest.update(inside.encode() + b"\0" + (_PACKAGE_ROOT / source).read_bytes() + b"\0")
    for inside in EMPTY_PACKAGES:
        digest.update(inside.encode() + b"\0\0")
    return digest.hexdigest()


def bundle_contents() -> list[tuple[str, bytes]]:
    """(path in the bundle, bytes) of every file of the bundle."""
    contents = [(inside, (_PACKAGE_ROOT / source).read_bytes()) for inside, source in BUNDLE_FILES]
    return contents + [(inside, b"") for inside in EMPTY_PACKAGES]


def write_bundle(target: Path) -> None:
    """Writes the bundle's files under ``target`` (world-readable: another uid runs them)."""
    for inside, data in bundle_contents():
        path = target / inside
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o755)  # noqa: S103 - read by the sandbox's uid
        path.write_bytes(data)
        os.chmod(path, 0o644)
        _write_bytecode(path)


def _write_bytecode(source: Path) -> None:
    """``source``'s bytecode where this Python version looks for it, world-readable. An
    interpreter of another version inside the sandbox ignores it and compiles as before."""
    cached = Path(importlib.util.cache_from_source(str(source)))
    py_compile.compile(str(source), cfile=str(cached), doraise=True,
                       invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)
    os.chmod(cached.parent, 0o755)  # noqa: S103 - read by the sandbox's uid
    os.chmod(cached, 0o644)


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
        # the bytecode's version in the name: a bundle written by another Python (or by an
        # rlmbox that shipped no bytecode) is never taken for this one
        target = root / f"agent-{bundle_digest()[:16]}-{sys.implementation.cache_tag}"
        if not target.exists():
            staging = Path(tempfile.mkdtemp(prefix=".agent-", dir=root))
            write_bundle(staging)
            os.chmod(staging, 0o755)  # noqa: S103 - read by the sandbox's uid
            try:
                staging.rename(target)
            except OSError:
                shutil.rmtree(staging, ignore_errors=True)  # another process won the race
        _cached = target
        return target
