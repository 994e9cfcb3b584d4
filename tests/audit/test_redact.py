"""Secrets never reach any file under the log directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlmbox.audit.log import AuditLog
from rlmbox.audit.redact import REDACTED, Redactor
from rlmbox.audit.verify import verify_log

SECRET = "prov-key-7f3a9c1e5b2d4f6a8c0e"  # noqa: S105  (fake; no known shape)
LATE = "late-secret-0123456789abcdef"


def all_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file())


def test_a_configured_secret_appears_in_no_file(logdir: Path) -> None:
    with AuditLog(logdir, secrets=[SECRET], checkpoint_every=2) as log:
        log.append("lm.request", session=f"s-{SECRET}", model="m", api_key=SECRET,
                   headers={"x-api-key": SECRET, SECRET: "as a key"}, args=[1, f"k={SECRET}"],
                   bodies={"prompt": f"use {SECRET} please", "raw": SECRET.encode() + b"\xff"})
        log.append(f"event-{SECRET}", bodies={SECRET: "body named after the secret"})
        log.add_secret(LATE)
        log.append("lm.response", text=f"echo {LATE}", bodies={"completion": LATE})
    data = all_bytes(logdir)
    assert SECRET.encode() not in data
    assert LATE.encode() not in data
    assert REDACTED.encode() in data
    assert verify_log(logdir).ok


@pytest.mark.parametrize("credential", [
    "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz012345",
    "sk-proj-AbCdEfGhIjKlMnOpQrStUvWx",
    "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc",
    "AKIAABCDEFGHIJKLMNOP",
    "ghp_" + "a" * 36,
])
def test_well_known_credential_shapes_are_redacted_unconfigured(
        logdir: Path, credential: str) -> None:
    with AuditLog(logdir) as log:
        log.append("host.call", summary=f"auth: {credential}", bodies={"code": credential})
    assert credential.encode() not in all_bytes(logdir)


def test_the_longest_overlapping_secret_is_redacted_whole() -> None:
    redactor = Redactor(["abcd", "abcdefgh"], patterns=())
    assert redactor.text("xabcdefghx") == f"x{REDACTED}x"


def test_an_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        Redactor([""])


def test_a_secret_with_json_escaped_characters_is_redacted(logdir: Path) -> None:
    odd = 'we"ird\\key\nwith-escapes-0123'
    with AuditLog(logdir, secrets=[odd]) as log:
        log.append("lm.request", api_key=odd, note=f"x{odd}y")
    data = all_bytes(logdir)
    assert odd.encode() not in data
    assert b'we\\"ird' not in data  # nor its JSON-escaped form


def test_the_fast_path_skips_only_events_without_any_candidate() -> None:
    redactor = Redactor([SECRET])
    assert not redactor.needs({"a": "plain", "n": 1, "l": ["x", {"k": "v"}]})
    assert redactor.needs({"deep": [{"k": f"..{SECRET}.."}]})
    assert redactor.needs({"k": "line\nbreak"})  # escapes present: walk to be sure
    assert redactor.needs({"k": "sk-ant-api03-AbCdEfGhIjKlMnOpQrSt"})
