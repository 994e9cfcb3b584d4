"""Builds a small closed log and rewrites its lines, for the tamper tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rlmbox.audit.canonical import canonical_bytes, record_digest
from rlmbox.audit.log import AuditLog

BODY_SEQ = 5


def build(logdir: Path, n: int = 12, every: int = 4, key: bytes | None = None) -> None:
    """``n`` host.call records, one with a code body (seq 5), a checkpoint every ``every``."""
    with AuditLog(logdir, checkpoint_every=every, signing_key=key) as log:
        for i in range(1, n + 1):
            bodies = {"code": f"print({i})"} if i == BODY_SEQ else None
            log.append("host.call", session="s", function="f", n=i, bodies=bodies)
            if i % every == 0:
                log.sync()


def read(logdir: Path) -> list[bytes]:
    return (logdir / "audit.jsonl").read_bytes().splitlines()


def write(logdir: Path, lines: list[bytes]) -> None:
    (logdir / "audit.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))


def record(line: bytes) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(line)
    return obj


def encode(obj: dict[str, Any]) -> bytes:
    return canonical_bytes(obj)


def relink(lines: list[bytes], start: int) -> list[bytes]:
    """Recompute seq and prev from index ``start`` on, as a forger with the code would."""
    out = list(lines[:start])
    for line in lines[start:]:
        obj = record(line)
        obj["seq"] = len(out) + 1
        obj["prev"] = record_digest(out[-1])
        out.append(encode(obj))
    return out
