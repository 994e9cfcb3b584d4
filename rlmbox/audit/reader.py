"""Reading records back for people (``show``, ``stats``); integrity is ``verify``'s job."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from rlmbox.audit.files import CURRENT, READ_TRIES, log_files, open_regular
from rlmbox.errors import AuditError


def log_directory(path: Path) -> Path:
    """The log directory for ``path`` (the directory itself or one of its files)."""
    path = Path(path)
    directory = path if path.is_dir() else path.parent
    if not directory.is_dir() or not log_files(directory):
        raise AuditError(f"no audit log at {path}")
    return directory


def iter_records(path: Path) -> Iterator[dict[str, Any]]:
    """Every parseable record in chain order; a torn or garbled line is skipped, not fatal.

    A live log rotates as it is read (its current file renamed to the next rotated name, a
    new one made): files are taken one at a time, each the first in chain order not yet
    read, from a listing that stayed the same while it was opened (a rotated file keeps its
    name and bytes for good), and the file that was current ends the read. Listed once, a
    rotation during the read made it read the new current file in place of the one just
    rotated and skip that one's records (review s13)."""
    directory = log_directory(path)
    done: set[str] = set()
    while (file := _next_unread(directory, done)) is not None:
        name, handle = file
        with handle:
            for raw in handle:
                if not raw.endswith(b"\n"):
                    continue  # torn tail of a crashed writer
                try:
                    record = json.loads(raw)
                except (ValueError, RecursionError):
                    continue
                if isinstance(record, dict):
                    yield record
        if name == CURRENT:
            return
        done.add(name)


def _next_unread(directory: Path, done: set[str]) -> tuple[str, BinaryIO] | None:
    """The first log file not in ``done``, open, and its name; None when none is left.
    A rotated name is that file for good; the current one is taken only if no rotation
    ran between the listing and its open. ``AuditError`` for an odd file, or for a log
    that rotated during each of ``READ_TRIES`` tries."""
    for _ in range(READ_TRIES):
        files = log_files(directory)
        unread = next((file for file in files if file.name not in done), None)
        if unread is None:
            return None
        try:
            handle = os.fdopen(open_regular(unread), "rb")   # AuditError: an odd file
        except FileNotFoundError:
            continue   # the current file, renamed since the listing
        if unread.name != CURRENT or log_files(directory) == files:
            return unread.name, handle
        handle.close()
    raise AuditError(f"the log in {directory} rotated during each of {READ_TRIES} reads; "
                     f"read it again (or read a copy)")
