"""``append`` screens a record's canonical line, not each string: it writes what the full
processor chain (redact every string, then chain) would have written, on any record."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from rlmbox.audit.log import AuditLog, default_severity
from rlmbox.audit.processors import Canonicalize, Chain, Processor, RedactSecrets, run_chain
from rlmbox.audit.redact import Redactor

SECRETS = ("prov-key-7f3a9c1e5b2d", 'quo"te\\key-0123', "4111111111111111", "0.25")

#: Pieces of text near what redaction cuts: secrets whole and in part, credential shapes and
#: their anchors, escapes, Unicode spaces, and the chain's own field names and digits.
_PIECES = st.sampled_from([
    "prov-key-", "7f3a9c1e5b2d", "prov-key-7f3a9c1e5b2d", 'quo"te', "\\key-0123",
    'quo"te\\key-0123', "41111111", "4111111111111111", "0.25", "sk-", "sk-ant-",
    "A" * 20, "abcdEFGH_-1234567890", "Bearer ", "bearer\t", "BEARER\\n", "\u00a0", "\u2028",
    "AKIA", "ABCDEFGHIJKLMNOP", "ghp_", "github_pat_", "gh", "\n", '"', "\\", "é", "\ud7ff",
    "seq", "ts", "prev", "0000", "2026-", "x", " "])
_TEXT = st.one_of(st.text(max_size=12), st.lists(_PIECES, max_size=8).map("".join))
_SCALAR = st.one_of(_TEXT, st.integers(), st.sampled_from([4111111111111111, 0.25, 1e-05]),
                    st.floats(allow_nan=False, allow_infinity=False), st.booleans(), st.none())
_VALUE = st.recursive(_SCALAR, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(_TEXT, inner, max_size=3)), max_leaves=8)
_OWN_NAMES = {"event", "session", "parent", "depth", "tenant", "bodies", "severity",
              "seq", "ts", "prev", "_bodies"}
_ATTRIBUTES = st.dictionaries(
    _TEXT.filter(lambda key: key not in _OWN_NAMES), _VALUE,
    max_size=5)


def _through_the_chain(attributes: dict[str, Any], seq: int, head: str) -> dict[str, Any]:
    """The record the full chain makes of ``attributes`` after ``(seq, head)``."""
    event = {**attributes, "event": "x.generated", "session": "s", "parent": None,
             "depth": 0, "tenant": None,
             "severity": default_severity("x.generated", attributes)}
    processors: list[Processor] = [RedactSecrets(Redactor(SECRETS)), Canonicalize(),
                                   Chain(seq, head)]
    sealed = run_chain(processors, event)
    record: dict[str, Any] = sealed.record
    return record


@settings(max_examples=400, deadline=None)
@given(_ATTRIBUTES)
def test_append_writes_what_the_full_chain_writes(attributes: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log = AuditLog(Path(tmp) / "audit", secrets=SECRETS)
        try:
            log.append("x.before")
            record = log.append("x.generated", session="s", **attributes)
            log.sync()
            written = json.loads(log.path.read_bytes().splitlines()[-1])
        finally:
            log.close()
    expected = _through_the_chain(attributes, record["seq"] - 1, record["prev"])
    for kept in (record, written, expected):
        kept.pop("ts")
    assert record == written == expected
    assert SECRETS[0] not in json.dumps(written, ensure_ascii=False)
