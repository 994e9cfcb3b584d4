"""A large ASCII context as a ``str`` whose characters are the staged file's own pages.

Loading a context was two passes over fresh memory: the host wrote the staged file (page
cache), then the agent built a ``str`` as large again and copied the file into it. On a
VM most of either is first touching fresh pages. Here the agent makes no copy: the file
is mapped read-only and shared, and a compact ASCII ``str`` header is put just before its
first character, in an anonymous page of its own. The string's characters are then the
host's page-cache pages, read-only: a write into them faults, so code can no more change
``context`` in place than it can change the file (``del context`` or rebinding the name
works as for any string).

The header is copied from a fresh ``PyUnicode_New`` of the same length (whose characters
are never touched), so its layout is the running interpreter's. The string is never
freed: its header holds one reference nobody owns, since its memory is not the
allocator's; the mapping lasts as long as the sandbox, which ends with its session. It
is used only for a file the host said is ASCII of exactly this length (the ``reserve``
frame); whatever cannot be done gives ``None`` and the file is decoded as before.
"""

from __future__ import annotations

import mmap
import os
import sys

_ASCII_MAX = 127
_MAP_FIXED = 0x10
_MAP_POPULATE = 0x8000   # the page-cache pages are mapped now, not faulted one at a time
_KEEP: list[str] = []    # every mapped context: never dropped (see above)


def mapped(fd: int, chars: int) -> str | None:
    """The ASCII file at ``fd`` (``chars`` bytes long, as the host said) as a ``str``
    over its pages; ``None`` when it cannot be made."""
    if chars <= 0 or os.fstat(fd).st_size != chars:
        return None
    try:
        import ctypes  # noqa: PLC0415 - only agents given a large context pay its import

        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                              ctypes.c_int, ctypes.c_long]
        new = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_ssize_t, ctypes.c_uint32)(
            ("PyUnicode_New", ctypes.pythonapi))
        template: str = new(chars, _ASCII_MAX)   # lazily backed: only its header is touched
    except (ImportError, AttributeError, OSError, MemoryError, OverflowError):
        return None
    header = sys.getsizeof("") - 1   # a compact ASCII string's size before its characters
    page = mmap.PAGESIZE
    if header > page or not _is_compact_ascii(template, header):
        return None
    fields = ctypes.string_at(id(template), header)
    del template   # freed before the file is mapped: never both in the address space
    # one page for the header, then the file, then at least one zero byte (the
    # terminator: past the end of the file in its last page, else the next page)
    span = page + (chars + page) // page * page
    failed = ctypes.c_void_p(-1).value
    base = libc.mmap(None, span, mmap.PROT_READ | mmap.PROT_WRITE,
                     mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    if base in (None, failed):
        return None
    start = base + page
    if libc.mmap(start, chars, mmap.PROT_READ,
                 mmap.MAP_SHARED | _MAP_FIXED | _MAP_POPULATE, fd, 0) != start:
        libc.munmap(ctypes.c_void_p(base), ctypes.c_size_t(span))
        return None
    address = start - header
    ctypes.memmove(address, fields, header)
    ctypes.c_ssize_t.from_address(address).value = 1   # the reference nobody owns
    text: str = ctypes.cast(address, ctypes.py_object).value
    _KEEP.append(text)
    return text


def _is_compact_ascii(template: str, header: int) -> bool:
    """The interpreter lays a compact ASCII string out as assumed here: its characters
    right after ``header`` bytes."""
    import ctypes  # noqa: PLC0415

    if len(template) == 0:
        return False
    ctypes.memset(id(template) + header, ord("m"), 1)
    return template[0] == "m"
