"""Reading records back for people (``show``, ``stats``); integrity is ``verify``'s job."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rlmbox.audit.files import log_files, open_regular
from rlmbox.errors import AuditError


def log_directory(path: Path) -> Path:
    """The log directory for ``path`` (the directory itself or one of its files)."""
    path = Path(path)
    directory = path if path.is_dir() else path.parent
    if not directory.is_dir() or not log_files(directory):
        raise AuditError(f"no audit log at {path}")
    return directory


def iter_records(path: Path) -> Iterator[dict[str, Any]]:
    """Every parseable record in chain order; a torn or garbled line is skipped, not fatal."""
    for file in log_files(log_directory(path)):
        with os.fdopen(open_regular(file), "rb") as handle:   # AuditError: an odd file
            for raw in handle:
                if not raw.endswith(b"\n"):
                    continue  # torn tail of a crashed writer
                try:
                    record = json.loads(raw)
                except (ValueError, RecursionError):
                    continue
                if isinstance(record, dict):
                    yield record
