"""The content-addressed body store beside the log: ``bodies/<aa>/<sha256>``.

Bodies live outside the chain (the event holds only the digest and size), so erasing one,
e.g. for personal data, leaves the chain verifiable; the verifier reports it as missing.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TypeGuard

_HEX = frozenset("0123456789abcdef")


def is_digest(value: object) -> TypeGuard[str]:
    """True for a lowercase SHA-256 hex string."""
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


class BodyStore:
    """Reads and durably writes bodies by digest."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._known: set[str] = set()  # digests already durable, to skip re-writes

    def path_for(self, digest: str) -> Path:
        """Where the body with ``digest`` is (or would be) stored."""
        if not is_digest(digest):
            raise ValueError(f"not a SHA-256 digest: {digest!r}")
        return self.root / digest[:2] / digest

    def read(self, digest: str) -> bytes | None:
        """The body, or ``None`` if it was never stored or has been erased."""
        try:
            return self.path_for(digest).read_bytes()
        except (FileNotFoundError, ValueError):
            return None

    def check(self, digest: str) -> str:
        """``"ok"``, ``"missing"`` or ``"corrupt"`` (present but not matching its digest)."""
        data = self.read(digest)
        if data is None:
            return "missing"
        return "ok" if hashlib.sha256(data).hexdigest() == digest else "corrupt"

    def write_durably(self, bodies: Mapping[str, bytes]) -> None:
        """Write each body (temp file, fsync, rename) and fsync the directories touched.

        Raises ``OSError``; the caller turns that into a fail-closed log.
        """
        dirs: set[Path] = set()
        for digest, data in bodies.items():
            if digest in self._known:
                continue
            final = self.path_for(digest)
            if not final.parent.is_dir():
                final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                dirs.add(self.root)
            if not final.exists():
                tmp = final.with_name(f".{digest}.{os.getpid()}.tmp")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    write_all(fd, data)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, final)
                dirs.add(final.parent)
            self._known.add(digest)
        if len(self._known) > 100_000:
            self._known.clear()  # bound memory; a re-write of an existing body is skipped anyway
        for directory in dirs:
            fsync_dir(directory)


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written (a short write is not an error)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def fsync_dir(directory: Path) -> None:
    """fsync a directory so that entries created or renamed in it are durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
