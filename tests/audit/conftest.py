"""Shared fixtures for the audit log tests: a fresh log directory per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rlmbox.audit.log import AuditLog


@pytest.fixture
def logdir(tmp_path: Path) -> Path:
    return tmp_path / "audit"


@pytest.fixture
def log(logdir: Path) -> Iterator[AuditLog]:
    audit = AuditLog(logdir, checkpoint_every=4)
    try:
        yield audit
    finally:
        audit.close()
