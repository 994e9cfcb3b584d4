"""Secrets: the host's environment, the LM provider's key, the audit signing key and
daemon tokens never enter a sandbox.

The search runs inside the sandbox over everything model code can read: its environment,
every /proc/*/environ and cmdline it can see, the files under /tmp, /rlmbox and /proc, and
the whole readable memory of its own process (/proc/self/mem, which holds every Python
object the agent has). The secrets themselves are never put into the cell: it gets a
public prefix, a length and SHA-256 digests, and reports any candidate whose digest
matches, so the search itself cannot plant what it looks for.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

from rlmbox.audit.checkpoint import KEY_FILE
from rlmbox.lm.base import Completion
from rlmbox.lm.scripted import ScriptedLM

from .harness import HostTargets, Runtimes, events, run_json, watched_session
from .secret_scan import scan_cell, target

PREFIX = "sk-ant-canary-"
ED25519_PKCS8_PREFIX = "MC4CAQAwBQYDK2VwBCIEI"   # the fixed ASN.1 head of every such key



def _target(token: str, prefix: str) -> list[Any]:
    assert token.startswith(prefix)
    return target(token, len(prefix))


class KeyedLM:
    """An LM provider holding an API key, as a real one would; answers from a script."""

    name = "keyed"
    model = "scripted"

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self._inner = ScriptedLM(default="fine")

    def complete(self, prompt: str, *, model: str | None = None) -> Completion:
        return self._inner.complete(prompt, model=model)


def test_host_secrets_are_nowhere_inside(runtimes: Runtimes, host: HostTargets,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The host's environment secret, the LM provider's key, the audit signing key and a
    daemon token are absent from the sandbox's environment, files and memory, even after
    an LM call has gone through the host."""
    daemon_token = f"{PREFIX}{secrets.token_hex(16)}"
    monkeypatch.setenv("RLMBOX_DAEMON_TOKEN", daemon_token)
    lm_key = f"{PREFIX}{secrets.token_hex(16)}"
    rt = runtimes(lm=KeyedLM(lm_key))
    assert rt.audit_path is not None
    key_file = rt.audit_path.parent / KEY_FILE
    pem_body = key_file.read_text().splitlines()[1]
    names = ["host environment secret", "LM provider key", "daemon token",
             "audit signing key"]
    targets = [_target(host.secret, PREFIX), _target(lm_key, PREFIX),
               _target(daemon_token, PREFIX), _target(pem_body, ED25519_PKCS8_PREFIX)]
    control = f"{PREFIX}{secrets.token_hex(16)}"   # planted inside on purpose: must be found
    with watched_session(rt) as (session, _):
        assert session.exec("print(llm_query('hello'))").stdout == "fine\n"
        planted = session.exec(
            f"control = {control[:len(PREFIX)]!r} + {control[len(PREFIX):]!r}")
        assert planted.status == "ok"
        outcome = run_json(session, scan_cell([*targets, _target(control, PREFIX)],
                                              memory=True))
    assert outcome["regions"] > 10, "the memory scan read nothing"
    control_index = len(targets)
    assert any(i == control_index for i, _ in outcome["found"]), \
        "the scan did not find the value planted as a control: it cannot see memory"
    leaks = [(names[i], where) for i, where in outcome["found"] if i != control_index]
    assert not leaks, f"secrets visible inside: {leaks}"


def test_host_function_failures_reveal_only_the_type(runtimes: Runtimes,
                                                     host: HostTargets) -> None:
    """A tool that fails with a secret in its exception message (a connection string, a
    path) reaches model code as the exception's type name only; the audit log has it."""
    def database(query: str) -> str:
        raise ConnectionError(f"cannot reach postgres://admin:{host.secret}@db/prod")

    rt = runtimes(rules=[{"id": "permit-db", "effect": "permit", "function": "tool.database"}])
    with watched_session(rt, tools={"database": database}) as (session, _):
        result = session.exec("try:\n    database('select 1')\n"
                              "except Exception as e:\n    print(type(e).__name__, e)\n")
        assert result.status == "ok", result.error
        assert host.secret not in result.stdout
        assert "ConnectionError" in result.stdout
    failed = events(rt, "host.call", function="tool.database", outcome="error")
    assert failed


def test_audit_log_holds_no_provider_key(runtimes: Runtimes, host: HostTargets) -> None:
    """The provider key and the host environment secret never reach the audit log, its
    bodies or its checkpoints."""
    lm_key = f"{PREFIX}{secrets.token_hex(16)}"
    rt = runtimes(lm=KeyedLM(lm_key))
    with watched_session(rt) as (session, _):
        session.exec("print(llm_query('hello ' * 10))")
    rt.close()
    assert rt.audit_path is not None
    for path in Path(rt.audit_path.parent).rglob("*"):
        if path.is_file() and path.name != KEY_FILE:
            data = path.read_bytes()
            assert lm_key.encode() not in data, f"provider key in {path}"
            assert host.secret.encode() not in data, f"host secret in {path}"
