"""Regex search over a large UTF-8 file, run in a child process the host can kill.

The pattern comes from model code, so it may backtrack for hours; Python's ``re`` cannot
be interrupted in-process. The host runs this module as ``python -m`` with a wall-clock
timeout and a CPU rlimit and kills it when either runs out. Standard library only.

Input (stdin, JSON): ``{"path", "pattern", "max_hits", "max_match_chars",
"cpu_seconds"}``. Output (stdout, JSON): a list of ``[start_char, end_char, text]``. The
file is the context's view: it holds only what the policy lets the search see.
"""

from __future__ import annotations

import codecs
import json
import re
import resource
import sys
from typing import Any

CHUNK_BYTES = 4 * 1024 * 1024
OVERLAP = 64 * 1024   # a match longer than this may be cut at a window edge
BACK = 1024           # preceding text kept so lookbehinds and \b see real context


def search(params: dict[str, Any]) -> list[list[Any]]:
    compiled = re.compile(params["pattern"])
    max_hits = int(params["max_hits"])
    cap = int(params.get("max_match_chars", 1000))
    hits: list[list[Any]] = []
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    base, carry, resume = 0, "", 0
    with open(params["path"], "rb") as handle:
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


def main() -> int:
    params = json.loads(sys.stdin.read())
    seconds = int(params.get("cpu_seconds", 10))
    resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 1))
    try:
        hits = search(params)
    except re.error as exc:
        json.dump({"error": f"invalid pattern: {exc}"}, sys.stdout)
        return 0
    json.dump({"hits": hits}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
