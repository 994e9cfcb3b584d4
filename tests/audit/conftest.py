"""Shared fixtures for the audit log tests: a fresh log directory per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rlmbox.audit.log import AuditLog

from .view_run import RealRun, record_real_run


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


@pytest.fixture(scope="session")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> RealRun:
    """One real run (process jail, scripted models) shared by the viewer tests; read-only:
    a test that tampers with it works on a copy."""
    return record_real_run(tmp_path_factory.mktemp("viewer-run"))
