"""The characters of a large ASCII ``str``, read in place as bytes.

An ASCII string's UTF-8 is its characters as CPython already stores them. Writing a 1 GB
context to its staged file a slice at a time spent a third of the write making two
copies of every slice (the ``str`` slice, then its ``encode``); a view over the string's
own memory writes the same bytes with neither.

Only an exact, compact ASCII ``str`` has its characters right after a fixed-size header
(``sys.getsizeof`` then counts exactly header, characters and terminator); anything else
gives ``None`` and is encoded as before. The view does not keep the string alive: the
caller holds the string for as long as it uses the view.
"""

from __future__ import annotations

import ctypes
import sys

_HEADER = sys.getsizeof("") - 1   # a compact ASCII string's bytes before its characters


def ascii_view(text: str) -> memoryview | None:
    """A read-only byte view of ``text``'s characters, or ``None`` if it is not an exact,
    compact ASCII ``str`` laid out as expected."""
    if type(text) is not str or not text or not text.isascii():
        return None
    if sys.getsizeof(text) != _HEADER + len(text) + 1:
        return None
    raw = (ctypes.c_char * len(text)).from_address(id(text) + _HEADER)
    view = memoryview(raw).cast("B").toreadonly()
    probe = min(len(text), 64)
    if view[:probe] != text[:probe].encode() or view[-probe:] != text[-probe:].encode():
        return None   # not where it was expected: an interpreter laid out otherwise
    return view
