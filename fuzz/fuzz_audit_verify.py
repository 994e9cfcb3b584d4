"""Atheris target: the audit verifier returns a ``VerifyReport`` for any bytes, never raises.

Input: log bytes, optionally followed by ``SEPARATOR`` and checkpoint-file bytes.
    python fuzz/fuzz_audit_verify.py -max_total_time=60 fuzz/corpus/audit_verify
    python fuzz/fuzz_audit_verify.py --make-corpus fuzz/corpus/audit_verify
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from rlmbox.audit.checkpoint import HmacKey
    from rlmbox.audit.verify import VerifyReport, verify_bytes

SEPARATOR = b"\n--checkpoints--\n"
FUZZ_KEY = b"rlmbox-fuzz-hmac-key-0123456789"
_CHECKER = HmacKey(FUZZ_KEY)


def TestOneInput(data: bytes) -> None:  # the name atheris looks for
    log, _, checkpoints = data.partition(SEPARATOR)
    report = verify_bytes(log, checkpoints, checker=_CHECKER)
    if not isinstance(report, VerifyReport):
        raise TypeError(f"verify_bytes returned {type(report).__name__}")
    if report.ok and report.first_bad_seq is not None:
        raise AssertionError("an ok report names a bad record")
    if not report.ok and not report.reason:
        raise AssertionError("a failed report gives no reason")


def make_corpus(target: Path) -> None:
    """Seed inputs: real logs (intact, tampered, torn) written with the fuzz HMAC key."""
    from rlmbox.audit.log import AuditLog  # noqa: PLC0415 - only for --make-corpus

    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "audit"
        with AuditLog(directory, signing_key=FUZZ_KEY, checkpoint_every=3) as log:
            for i in range(8):
                log.append("host.call", session="s", parent=None, depth=0, function="f", n=i,
                           nested={"a": [1, 2.5, None, True]}, bodies={"code": f"x={i}"})
                if i % 3 == 2:
                    log.sync()
        lines = (directory / "audit.jsonl").read_bytes().splitlines(keepends=True)
        cps = (directory / "checkpoints.jsonl").read_bytes()
    seeds = {
        "intact": b"".join(lines) + SEPARATOR + cps,
        "no_checkpoints": b"".join(lines),
        "deleted": b"".join(lines[:3] + lines[4:]) + SEPARATOR + cps,
        "reordered": b"".join([*lines[:3], lines[4], lines[3], *lines[5:]]) + SEPARATOR + cps,
        "truncated": b"".join(lines[:5]) + SEPARATOR + cps,
        "torn": b"".join(lines) + lines[0][:20] + SEPARATOR + cps,
        "edited": b"".join(lines).replace(b'"n":4', b'"n":5') + SEPARATOR + cps,
        "bad_sig": b"".join(lines) + SEPARATOR + cps.replace(b'"sig":"', b'"sig":"AA', 1),
        "empty": b"",
        "garbage": b"\xff\x00{[\n\n",
    }
    for name, data in seeds.items():
        (target / name).write_bytes(data)


if __name__ == "__main__":
    from entry import run  # fuzz/ is sys.path[0] when run as a script

    run(TestOneInput, make_corpus)
