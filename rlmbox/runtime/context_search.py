"""Regex search over a large UTF-8 file, run in a process jail the host can kill.

The pattern comes from model code, so it may backtrack for hours and may aim at a bug in
``_sre``; Python's ``re`` cannot be interrupted in-process. The host runs this file from
the agent bundle in a jail (``sandboxes/process/oneshot.py``: namespaces, the sandbox uid,
an empty environment, a cgroup, a CPU rlimit, a wall-clock deadline), and the file installs
Landlock (nothing writable) and seccomp before it compiles the pattern. Standard library
and the bundle's ``confine.py`` only.

Input (stdin, JSON): ``{"fd", "pattern", "max_hits", "max_match_chars"}``; ``fd`` is the
inherited descriptor of the context's view, which holds only what the policy lets the
search see. Output (stdout, JSON): ``{"hits": [[start_char, end_char, text], ...]}``.
"""

from __future__ import annotations

import codecs
import json
import os
import re
import sys
from typing import Any, BinaryIO

CHUNK_BYTES = 4 * 1024 * 1024
OVERLAP = 64 * 1024   # a match longer than this may be cut at a window edge
BACK = 1024           # preceding text kept so lookbehinds and \b see real context


def search(handle: BinaryIO, params: dict[str, Any]) -> list[list[Any]]:
    compiled = re.compile(params["pattern"])
    max_hits = int(params["max_hits"])
    cap = int(params.get("max_match_chars", 1000))
    hits: list[list[Any]] = []
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    base, carry, resume = 0, "", 0
    while len(hits) < max_hits:
        chunk = handle.read(CHUNK_BYTES)
        final = not chunk
        text = carry + decoder.decode(chunk, final=final)
        cutoff = len(text) if final else max(resume, len(text) - OVERLAP)
        for match in compiled.finditer(text, resume):
            if match.start() >= cutoff:
                break
            hits.append([base + match.start(), base + match.end(), match.group()[:cap]])
            if len(hits) >= max_hits:
                break
        if final:
            break
        keep = max(0, cutoff - BACK)
        carry, base, resume = text[keep:], base + keep, cutoff - keep
    return hits


def _confine() -> None:
    """Nothing writable, no TCP, the sandbox's syscall filter: before the pattern runs."""
    from rlmbox.sandboxes.process.confine import (  # noqa: PLC0415 - the bundle's path is set
        install_landlock,
        install_seccomp,
    )
    install_landlock(writable=[])
    install_seccomp()


def main() -> int:
    params = json.loads(sys.stdin.read())
    _confine()
    try:
        with os.fdopen(int(params["fd"]), "rb") as handle:
            handle.seek(0)   # the descriptor's offset is shared with the host's copy
            hits = search(handle, params)
    except re.error as exc:
        json.dump({"error": f"invalid pattern: {exc}"}, sys.stdout)
        return 0
    json.dump({"hits": hits}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # the bundle's root
    sys.exit(main())
