"""The staged context file, decoded once into the ``context`` value.

The file is mapped read-only and decoded straight from the mapping: one copy, from the
host's pages into the string (a text-mode read made two, bytes then str, and translated
``\\r\\n`` to ``\\n``, so the model saw a different text from the one it was given). The
file is UTF-8, as the host wrote it; ASCII takes CPython's fast path in the decoder. A
large ASCII context is not copied at all: the string is the file's mapped pages
(``context_map``).
"""

from __future__ import annotations

import json
import mmap
import os

from rlmbox.sandboxes.agent import context_map

TYPE_CHECKING = False   # typing costs ~2 ms at every sandbox start: for mypy only
if TYPE_CHECKING:
    from typing import Any


def load(path: str, kind: str, ascii_chars: int | None = None) -> Any:
    """The context at ``path``: a ``str``, or for ``kind == "json"`` the decoded value.

    ``ascii_chars`` is the length the host announced for an ASCII text (the ``reserve``
    frame): a file of exactly that size is mapped, not decoded."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        if kind == "str" and ascii_chars is not None:
            mapped = context_map.mapped(fd, ascii_chars)
            if mapped is not None:
                return mapped
        if size == 0:   # mmap refuses an empty file
            text = ""
        else:
            with mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ) as view:
                text = str(view, "utf-8")
    finally:
        os.close(fd)
    return json.loads(text) if kind == "json" else text
