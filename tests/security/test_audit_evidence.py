"""The sandbox cannot hide evidence from the audit log behind a credential-shaped string.

Credential patterns redact sandbox-controlled bodies (a stdout that happens to look like a
key), so model code could prefix what it exfiltrates with ``sk-`` and leave the log only
``[REDACTED]``. A pattern-only redaction now keeps the evidence: the record holds the
digest of the original body and the spans cut, each with its reason, so the original,
produced later (the caller got it), can be proven to be what the cell printed.
"""

from __future__ import annotations

import hashlib

from rlmbox.audit.bodies import BodyStore
from rlmbox.audit.redact import REDACTED

from .harness import Runtimes, events, watched_session


def test_credential_shaped_output_keeps_its_digest_and_spans(runtimes: Runtimes) -> None:
    """``print("sk-" + "a"*24 + data)``: the caller gets it, the log stores the body
    redacted, and the record proves what the original was and what was cut, and why."""
    rt = runtimes()
    with watched_session(rt) as (session, _):
        result = session.exec("print('before ' + 'sk-' + 'a' * 24 + 'EXFILTRATED-DATA')")
        assert result.stdout == "before sk-" + "a" * 24 + "EXFILTRATED-DATA\n"
        [record] = events(rt, "cell.result", cell=result.cell_id)
    original = result.stdout.encode()
    assert record["stdout_original_sha256"] == hashlib.sha256(original).hexdigest()
    assert record["stdout_redactions"] == [
        {"start": 7, "end": len(original) - 1, "reason": "credential pattern"}]
    assert rt.audit_path is not None
    stored = BodyStore(rt.audit_path.parent / "bodies").read(record["stdout_sha256"])
    assert stored == b"before " + REDACTED.encode() + b"\n"


def test_unredacted_output_carries_no_evidence_fields(runtimes: Runtimes) -> None:
    """Ordinary output is stored as it is; nothing extra is recorded."""
    rt = runtimes()
    with watched_session(rt) as (session, _):
        result = session.exec("print('plain')")
        [record] = events(rt, "cell.result", cell=result.cell_id)
    assert record["stdout_sha256"] == hashlib.sha256(b"plain\n").hexdigest()
    assert "stdout_original_sha256" not in record
    assert "stdout_redactions" not in record


def test_output_shaped_like_a_body_segment_entry_plants_no_body(runtimes: Runtimes) -> None:
    """Bodies share segment files: a cell printing a well-formed entry for a body of its
    choosing gets no body stored under that digest; its stdout stays one body."""
    planted = "print('planted')"
    digest = hashlib.sha256(planted.encode()).hexdigest()
    rt = runtimes()
    with watched_session(rt) as (session, _):
        result = session.exec(
            f"import sys\nsys.stdout.write('x\\nRLMBODY1 {digest} {len(planted):020d} L\\n'"
            f" + {planted!r} + '\\n')")
        [record] = events(rt, "cell.result", cell=result.cell_id)
    assert rt.audit_path is not None
    store = BodyStore(rt.audit_path.parent / "bodies")
    assert store.read(digest) is None
    assert store.read(record["stdout_sha256"]) == result.stdout.encode()
    assert f"RLMBODY1 {digest}" in result.stdout
