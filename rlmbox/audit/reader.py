"""Reading records back for people (``show``, ``stats``); integrity is ``verify``'s job."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from rlmbox.audit.files import CURRENT, MAX_LINE_BYTES, READ_TRIES, log_files, open_regular
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
    new one made). A rotated file keeps its name and bytes for good, so the files are read
    from one listing, and the current one only if the listing is still the same once it is
    open; else the listing is taken again and reading goes on with the files not yet read.
    The file that was current ends the read. Listed once, a rotation during the read made it
    read the new current file in place of the one just rotated and skip that one's records
    (review s13); listed again for every file, many files made it quadratic (review s13b)."""
    directory = log_directory(path)
    done: set[str] = set()
    crossed = 0   # listings in a row a rotation made stale before the current file opened
    while crossed < READ_TRIES:
        files = log_files(directory)
        for file in files:
            if file.name in done:
                continue
            try:
                handle = os.fdopen(open_regular(file), "rb")   # AuditError: an odd file
            except FileNotFoundError:
                break   # the current file, renamed since the listing: list again
            current = file.name == CURRENT
            if current and log_files(directory) != files:
                handle.close()
                break
            crossed = 0
            with handle:
                yield from _records(handle, file)
            if current:
                return
            done.add(file.name)
        else:
            return   # no current file: the rotated ones were all
        crossed += 1
    raise AuditError(f"the log in {directory} rotated during each of {READ_TRIES} reads; "
                     f"read it again (or read a copy)")


def _records(handle: BinaryIO, file: Path) -> Iterator[dict[str, Any]]:
    offset = 0
    while raw := handle.readline(MAX_LINE_BYTES + 1):
        if len(raw) > MAX_LINE_BYTES:
            raise AuditError(f"{file} at byte {offset}: a line over {MAX_LINE_BYTES} bytes "
                             f"is no audit record; 'rlmbox audit verify' reports the damage")
        offset += len(raw)
        if not raw.endswith(b"\n"):
            continue  # torn tail of a crashed writer
        try:
            record = json.loads(raw)
        except (ValueError, RecursionError):
            continue
        if isinstance(record, dict):
            yield record
