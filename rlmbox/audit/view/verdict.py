"""What the verifier proved about the log, as the report's banner says it.

The banner is the first thing a reader sees, so it says the verdict before anything the
log contains: ``FAIL`` with the first bad record and why, ``INCOMPLETE`` when no signed
checkpoint covers the tail, ``VERIFIED`` only when the chain, the checkpoints and (when
given) the off-host anchors all hold. The words are ``rlmbox audit verify``'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rlmbox.audit.verify import VerifyReport

_PINNED = ("pinned public key", "hmac key given")


@dataclass(frozen=True)
class Verdict:
    """``level`` is ``verified``, ``incomplete`` or ``failed``; the rest are sentences."""

    level: str
    headline: str
    details: list[str] = field(default_factory=list)
    first_bad_seq: int | None = None
    last_bad_seq: int | None = None


def verdict_of(report: VerifyReport, *, anchors_given: bool) -> Verdict:
    """The banner for ``report``; ``anchors_given`` says whether anchors were checked."""
    details = _facts(report, anchors_given=anchors_given)
    if not report.ok:
        seq = "?" if report.first_bad_seq is None else str(report.first_bad_seq)
        span = ("" if report.last_bad_seq in (None, report.first_bad_seq)
                else f"..{report.last_bad_seq}")
        return Verdict("failed", f"FAIL: first bad record: seq {seq}{span} ({report.kind}): "
                       f"{report.reason}", details, report.first_bad_seq, report.last_bad_seq)
    if not report.sealed:
        return Verdict("incomplete", f"INCOMPLETE: records 1..{report.last_seq} are intact, "
                       f"but {report.unsealed_explanation()}", details)
    return Verdict("verified", f"VERIFIED: {report.events} records (seq 1..{report.last_seq}), "
                   f"chain and {report.checkpoints} signed checkpoint(s) hold, sealed", details)


def _facts(report: VerifyReport, *, anchors_given: bool) -> list[str]:
    facts = [f"head {report.head[:16]}…; checkpoint key: {report.key_source or 'none'}"
             + ("" if report.key_source in _PINNED else
                " (not pinned: whoever can rewrite the log can replace that key too)")]
    if anchors_given:
        facts.append(f"off-host anchors: {report.anchors} held" if report.ok
                     else "off-host anchors: checked (see the failure above)")
    else:
        facts.append("off-host anchors: not given (pass --anchors FILE to check them)")
    if report.missing_bodies:
        facts.append(f"{len(report.missing_bodies)} body(ies) missing (erased?); the chain "
                     "does not depend on them")
    facts.extend(f"warning: {warning}" for warning in report.warnings)
    return facts
