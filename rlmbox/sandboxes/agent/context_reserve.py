"""A large ASCII context's string, made while the host is still writing the file.

Loading a context is two passes over fresh memory: the host writes the staged file, then
the agent builds the ``str``. On a VM most of either is first touching its pages, not
copying. The host names the size before it writes (the ``reserve`` frame, sent only for
ASCII text: ``str.isascii`` is a flag, free to read), so the agent allocates the string
and touches its pages on its own core while the host writes; ``fill`` then reads the file
straight into them, a copy between pages that already exist.

The string is a compact ASCII ``str`` from ``PyUnicode_New``, whose characters follow its
header. It is written only here, before anything else can see it, and kept only if the
file has exactly its length; whatever cannot be done (no ctypes, an interpreter laid out
otherwise, no memory) gives ``None`` and the context is decoded as before.
"""

from __future__ import annotations

import contextlib
import os
import sys

_ASCII_MAX = 127
_MADV_POPULATE_WRITE = 23   # Linux 5.14; older kernels and gVisor refuse it: pages touched


def reserve(chars: int) -> str | None:
    """A fresh ASCII ``str`` of ``chars`` characters, its pages touched; ``None`` when one
    cannot be made (then the file is decoded as usual)."""
    if chars <= 0:
        return None
    try:
        import ctypes  # noqa: PLC0415 - only agents given a large context pay its import

        new = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_ssize_t, ctypes.c_uint32)(
            ("PyUnicode_New", ctypes.pythonapi))
        if not _layout_is_known(new):
            return None
        text: str = new(chars, _ASCII_MAX)
    except (ImportError, AttributeError, OSError, MemoryError, OverflowError):
        return None
    _touch(_characters(text), chars)
    return text


def fill(text: str, fd: int) -> bool:
    """Reads the whole file at ``fd`` into ``text`` (from ``reserve``); False, with
    ``text`` not to be used, when the file is not exactly ``len(text)`` bytes."""
    import ctypes  # noqa: PLC0415

    size = len(text)
    if os.fstat(fd).st_size != size:
        return False
    view = memoryview((ctypes.c_char * size).from_address(_characters(text))).cast("B")
    done = 0
    while done < size:
        got = os.preadv(fd, [view[done:]], done)
        if got <= 0:
            return False
        done += got
    return True


def _characters(text: str) -> int:
    """The address of a compact ASCII string's first character: right after its header."""
    return id(text) + sys.getsizeof("") - 1


def _layout_is_known(new: object) -> bool:
    """Writes one character where ``_characters`` says it goes, and checks it came out: an
    interpreter laid out otherwise gets no reservation."""
    import ctypes  # noqa: PLC0415

    probe: str = new(1, _ASCII_MAX)  # type: ignore[operator]
    ctypes.memset(_characters(probe), ord("r"), 1)
    return probe == "r"


def _touch(address: int, size: int) -> None:
    """Makes every page of ``[address, address + size)`` resident now, in one call where
    the kernel can, else a page at a time."""
    import ctypes  # noqa: PLC0415

    page = os.sysconf("SC_PAGE_SIZE")
    start = -(-address // page) * page
    end = (address + size) // page * page
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        if end <= start or libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start),
                                        _MADV_POPULATE_WRITE) == 0:
            return
    ctypes.memset(address, 0, size)
