"""Through the daemon too, secrets never enter a sandbox: the LM provider's key, the
daemon's environment and the caller's bearer token.

The cell gets only a public prefix, a length and a SHA-256 digest of each secret and
reports candidates whose digest matches, so the search cannot plant what it looks for.
(The embedded engine's full proof, memory included, is tests/security/test_secrets.py.)
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest

from rlmbox.lm.openai_compat import OpenAICompatibleLM
from tests.security.secret_scan import scan_cell, target

from .conftest import RunningDaemon


def test_no_secret_reaches_a_sandbox_started_by_the_daemon(
        start_daemon: Callable[..., RunningDaemon], monkeypatch: pytest.MonkeyPatch) -> None:
    key = "sk-canary-" + secrets.token_hex(16)
    monkeypatch.setenv("OPENAI_API_KEY", key)   # the operator's environment holds it too
    lm = OpenAICompatibleLM("canary-model", "http://127.0.0.1:9", api_key=key,
                            allow_unpriced=True)
    running = start_daemon(lm=lm)
    token = running.token("alice")
    control = "ctl-canary-" + secrets.token_hex(16)   # put in the context: must be found
    targets = [target(key, 10), target(token, 10), target(control, 11)]
    code = scan_cell(targets, memory=False)
    with running.client("alice") as client:
        info = client.create_session(context=f"public text {control}")
        result = client.exec(info["id"], code)
        client.close_session(info["id"])
    assert result.ok, result.error
    found = json.loads(result.stdout)["found"]
    assert {index for index, _ in found} == {2}, found   # the scan works, and finds only it
    audit: Path = running.daemon.audit_dir
    logged = b"".join(p.read_bytes() for p in audit.rglob("*") if p.is_file())
    assert key.encode() not in logged
    assert token.encode() not in logged
