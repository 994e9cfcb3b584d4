"""Atheris target: a body is cut exactly where the same text in an attribute is, its spans
rebuild the stored bytes from the original, and the pre-check never skips a text that
redaction would change.

    python fuzz/fuzz_redact.py -max_total_time=60 fuzz/corpus/redact
    python fuzz/fuzz_redact.py --make-corpus fuzz/corpus/redact
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from rlmbox.audit.redact import REDACTED, Redactor

SECRET = 'k\\ey"0123456789'   # noqa: S105  (fake; a backslash and a quote: escaped forms too)
REDACTOR = Redactor([SECRET])
MARKER = REDACTED.encode()
#: The secret as registered and as JSON escapes it, longest first (as ``Redactor.add``).
SECRET_FORMS = sorted({SECRET.encode(), json.dumps(SECRET)[1:-1].encode()}, key=len, reverse=True)


def TestOneInput(data: bytes) -> None:  # the name atheris looks for
    result = REDACTOR.body(data)
    original = data
    for form in SECRET_FORMS:   # the configured secret goes first, without evidence
        original = original.replace(form, MARKER)
    if result.spans:
        if result.original_sha256 != hashlib.sha256(original).hexdigest():
            raise AssertionError("the evidence digest is not the original's")
        rebuilt, cut = b"", 0
        for span in result.spans:
            if not cut <= span["start"] < span["end"] <= len(original):
                raise AssertionError(f"span out of order or bounds: {result.spans}")
            rebuilt += original[cut:span["start"]] + MARKER
            cut = span["end"]
        if rebuilt + original[cut:] != result.data:
            raise AssertionError("the spans do not rebuild the stored body")
    elif result.data != original:
        raise AssertionError("a body changed by a pattern without evidence")
    text = data.decode("utf-8", "surrogateescape")
    if REDACTOR.text(text).encode("utf-8", "surrogateescape") != result.data:
        raise AssertionError("body and attribute redaction disagree")
    if REDACTOR.text(text) != text and not REDACTOR.needs({"k": text}):
        raise AssertionError("the pre-check skipped a text redaction changes")


def make_corpus(target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    seeds = {
        "bearer-nbsp": "Authorization: Bearer\u00a0eyJhbGciOiJIUzI1NiJ9abcdef".encode(),
        "bearer-json-tab": b'{"prompt": "Bearer\\teyJhbGciOiJIUzI1NiJ9abcdef"}',
        "github-pat": b"github_pat_11ABCDEFG0a1B2c3D4e5a1B2c3D4e5xy",
        "ghp-not-utf8": b"\xff\xfe ghp_" + b"a1B2" * 9 + b" \xc3",
        "secret-escaped": b'{"a": "k\\\\ey\\"0123456789"}',
        "mixed": "é sk-ant-api03-Ab1_-Ab1_-Ab1_-Ab1_ AKIAABCDEFGHIJKLMNOP".encode(),
    }
    for name, data in seeds.items():
        (target / name).write_bytes(data)


if __name__ == "__main__":
    from entry import run  # fuzz/ is sys.path[0] when run as a script

    run(TestOneInput, make_corpus)
