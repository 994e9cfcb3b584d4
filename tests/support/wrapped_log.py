"""A real ``AuditLog`` behind the runtime's audit seam, for tests that watch or break
``append`` and ``sync``: a subclass overrides those two; the rest passes through."""

from __future__ import annotations

from pathlib import Path

from rlmbox.audit.log import AuditLog


class WrappedLog:
    """Passes ``add_secret``, ``redact`` and ``close`` to the real log it wraps."""

    def __init__(self, directory: Path) -> None:
        self.log = AuditLog(directory)

    def add_secret(self, value: str) -> None:
        self.log.add_secret(value)

    def redact(self, text: str) -> str:
        return self.log.redact(text)

    def close(self) -> None:
        self.log.close()
