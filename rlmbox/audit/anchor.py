"""Off-host anchors: a record's digest kept where the host cannot rewrite it.

Checkpoints are signed with a key that lives beside the log, so root on the host can
rewrite the whole log and sign it again, and the verifier would accept it. An anchor is
one JSON line, ``{"seq": N, "head": "<sha256 of record N>", "ts": ...}``, that the
operator ships off the host (a write-once bucket, another machine, a ticket) on a
schedule. Because every record names its predecessor's digest, a log that still holds
``head`` at ``seq`` N still holds the anchored records 1..N byte for byte; verifying with
anchors turns "the log is self-consistent" into "the log is the one we anchored".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rlmbox.audit.bodies import is_digest
from rlmbox.audit.canonical import rfc3339_now
from rlmbox.audit.verify import VerifyReport
from rlmbox.errors import AuditError

_FIELDS = frozenset({"seq", "head", "ts"})


@dataclass(frozen=True, slots=True)
class Anchor:
    """The digest ``head`` that record ``seq`` had when it was anchored."""

    seq: int
    head: str


def anchor_line(report: VerifyReport) -> str:
    """The anchor for the head of a log that just verified; refuses a log that did not."""
    if not report.ok:
        raise AuditError(f"refusing to anchor a log that fails verification: {report.reason}")
    if report.last_seq < 1:
        raise AuditError("refusing to anchor an empty log")
    return json.dumps({"seq": report.last_seq, "head": report.head, "ts": rfc3339_now()},
                      sort_keys=True)


def load_anchors(path: Path) -> dict[int, str]:
    """``{seq: head}`` from an anchor file; any bad line is an ``AuditError`` naming it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditError(f"cannot read the anchor file {path}: {exc}") from exc
    anchors: dict[int, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        anchor = _parse(line, f"{path} line {number}")
        if anchors.get(anchor.seq, anchor.head) != anchor.head:
            raise AuditError(f"{path} line {number}: seq {anchor.seq} is anchored twice with "
                             "different heads")
        anchors[anchor.seq] = anchor.head
    if not anchors:
        raise AuditError(f"the anchor file {path} holds no anchors")
    return anchors


def _parse(line: str, where: str) -> Anchor:
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise AuditError(f"{where}: not JSON ({exc})") from exc
    if not isinstance(obj, dict) or not {"seq", "head"} <= set(obj) <= _FIELDS:
        raise AuditError(f"{where}: an anchor is an object with seq, head and ts")
    seq, head = obj["seq"], obj["head"]
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise AuditError(f"{where}: seq must be a positive integer")
    if not is_digest(head):
        raise AuditError(f"{where}: head must be a lowercase SHA-256 hex digest")
    return Anchor(seq, head)
