"""Bodies as the report shows them: the first bytes, a count of the rest, and a warning
when a body is missing or does not match the digest its record names.

The cap bounds the report: a run of a thousand cells that each printed a megabyte still
renders in a few megabytes; ``rlmbox audit show --fold 0`` prints a body whole.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from rlmbox.audit.bodies import BodyStore, is_digest

#: The most bytes of one body the report shows.
PREVIEW_BYTES = 8192


@dataclass(frozen=True, slots=True)
class Preview:
    """The text to show (possibly cut) and what the reader must know about it."""

    text: str
    note: str = ""
    altered: bool = False


class BodyPreviews:
    """Reads bodies from the store beside the log and cuts them to ``limit`` bytes."""

    def __init__(self, store: BodyStore, limit: int = PREVIEW_BYTES) -> None:
        self._store = store
        self._limit = limit

    def preview(self, digest: str | None) -> Preview | None:
        """None when the record names no such body."""
        if not is_digest(digest):
            return None
        data = self._store.read(digest)
        if data is None:
            return Preview("", "body missing: erased or never stored")
        altered = hashlib.sha256(data).hexdigest() != digest
        note = "ALTERED: this body does not match the digest its record names" if altered else ""
        if len(data) > self._limit:
            rest = len(data) - self._limit
            note = (note + "; " if note else "") + (
                f"{rest} more byte(s) not shown (rlmbox audit show --fold 0 prints it whole)")
            data = data[:self._limit]
        return Preview(data.decode("utf-8", "replace"), note, altered)
