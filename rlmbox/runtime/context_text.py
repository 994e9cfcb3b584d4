"""A memory-mapped UTF-8 text file addressed by character and by line, never loaded whole.

One pass at open validates UTF-8 and records, for every block of about 64 KiB (cut at a
character boundary), its byte offset, the characters before it and the newlines before
it. A lookup is then a binary search plus decoding one block, so a 1 GB file costs a few
hundred kilobytes of index and no Python string of its size.
"""

from __future__ import annotations

import bisect
import mmap
from array import array
from pathlib import Path

BLOCK_BYTES = 64 * 1024


def _last_boundary(chunk: bytes) -> int:
    """Index where the last (possibly incomplete) character of ``chunk`` starts."""
    i = len(chunk) - 1
    while i > 0 and len(chunk) - i < 4 and (chunk[i] & 0xC0) == 0x80:
        i -= 1
    return i if i > 0 else len(chunk)


class TextFile:
    """Read-only character and line access to a UTF-8 file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with path.open("rb") as handle:
            self.size = handle.seek(0, 2)
            # mmap cannot map an empty file; an empty context is simply b""
            self._mm: mmap.mmap | bytes = (
                mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if self.size else b"")
        self._bytes = array("q")
        self._chars = array("q")
        self._lines = array("q")
        self.chars = 0
        self.newlines = 0
        self._build()

    def _build(self) -> None:
        # Reads through the file, not the map, so indexing leaves no mapped pages resident.
        start, carry = 0, b""
        with self.path.open("rb") as handle:
            while True:
                chunk = carry + handle.read(BLOCK_BYTES)
                if not chunk:
                    break
                at_end = start + len(chunk) >= self.size
                cut = len(chunk) if at_end else _last_boundary(chunk)
                block, carry = chunk[:cut], chunk[cut:]
                try:
                    text = block.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise ValueError(
                        f"context is not UTF-8 at byte {start + exc.start}") from exc
                self._bytes.append(start)
                self._chars.append(self.chars)
                self._lines.append(self.newlines)
                self.chars += len(text)
                self.newlines += block.count(b"\n")
                start += cut

    def close(self) -> None:
        if isinstance(self._mm, mmap.mmap):
            self._mm.close()

    def byte_at(self, char: int) -> int:
        """Byte offset of character ``char`` (0 <= char <= chars)."""
        if char >= self.chars:
            return self.size
        block = bisect.bisect_right(self._chars, char) - 1
        start = self._bytes[block]
        end = self._bytes[block + 1] if block + 1 < len(self._bytes) else self.size
        text = self._mm[start:end].decode("utf-8")
        return start + len(text[: char - self._chars[block]].encode("utf-8"))

    def char_at(self, byte: int) -> int:
        """Character index of the character starting at ``byte``."""
        if byte >= self.size:
            return self.chars
        block = bisect.bisect_right(self._bytes, byte) - 1
        start = self._bytes[block]
        return self._chars[block] + len(self._mm[start:byte].decode("utf-8"))

    def decode(self, start_byte: int, end_byte: int) -> str:
        return self._mm[start_byte:end_byte].decode("utf-8")

    def line_start(self, line: int) -> int:
        """Byte offset where 0-based line ``line`` starts (``size`` past the last line)."""
        if line <= 0:
            return 0
        if line > self.newlines:
            return self.size
        block = bisect.bisect_left(self._lines, line) - 1
        offset, seen = self._bytes[block], self._lines[block]
        find = self._mm.find
        while seen < line:
            offset = find(b"\n", offset) + 1
            seen += 1
        return offset

    def next_line_end(self, offset: int) -> int:
        """Byte offset just past the newline ending the line at ``offset`` (or ``size``)."""
        found = self._mm.find(b"\n", offset)
        return self.size if found < 0 else found + 1
