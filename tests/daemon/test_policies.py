"""Policies are the operator's: clients choose by name; a denial inside a cell looks the
same through the daemon as in embedded use."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from rlmbox.errors import IsolationUnavailable
from rlmbox.lm.scripted import ScriptedLM
from rlmbox.policies.model import load_policy
from rlmbox.runtime.runtime import Runtime

from .conftest import RunningDaemon, policy_file, rules_for_tests

NO_LLM_RULES = [{"id": "permit-context", "effect": "permit", "function": "context.*"}]
CELLS = ("try:\n    llm_query('hi')\nexcept PolicyDenied as e:\n    print('denied:', e)",
         "llm_query('hi')")


def test_policy_denial_surfaces_as_in_embedded_use(
        start_daemon: Callable[..., RunningDaemon], tmp_path: Path) -> None:
    strict = policy_file(tmp_path, "nollm", rules=NO_LLM_RULES)
    running = start_daemon(policies={"open": load_policy(policy_file(tmp_path)),
                                     "nollm": load_policy(strict)})
    with running.client("alice") as client:
        info = client.create_session(policy="nollm")
        assert info["policy"] == "nollm"
        remote = [client.exec(info["id"], cell) for cell in CELLS]
        client.close_session(info["id"])
        default = client.create_session()
        assert default["policy"] == "open"   # the first policy is the default
        assert client.exec(default["id"], "print(llm_query('x'))").stdout == (
            "daemon-lm saw: x\n")
        client.close_session(default["id"])
    with Runtime(strict, lm=ScriptedLM(rules_for_tests()), audit_dir=tmp_path / "embedded",
                 pool_size=0) as runtime, runtime.session() as session:
        local = [session.exec(cell) for cell in CELLS]
    assert remote[0].stdout.startswith("denied: ")
    assert [(r.status, r.stdout, (r.error or "").split(":")[0]) for r in remote] == [
        (r.status, r.stdout, (r.error or "").split(":")[0]) for r in local]
    assert remote[1].status == "error"
    assert "PolicyDenied" in (remote[1].error or "")


def test_the_policy_hash_is_the_operators(start_daemon: Callable[..., RunningDaemon],
                                          tmp_path: Path) -> None:
    policy = load_policy(policy_file(tmp_path))
    running = start_daemon(policies={"test": policy})
    with running.client("alice") as client:
        info = client.create_session(policy="test")
        client.close_session(info["id"])
    assert info["policy_sha256"] == policy.sha256


def test_a_policy_the_backend_cannot_honour_is_refused_as_in_embedded_use(
        start_daemon: Callable[..., RunningDaemon], tmp_path: Path) -> None:
    base = load_policy(policy_file(tmp_path)).model_dump(mode="json")["isolation"]
    needs_gvisor = policy_file(tmp_path, "gvisor", isolation={
        **base, "require": [*base["require"], "user_space_kernel"]})
    running = start_daemon(policies={"gvisor": load_policy(needs_gvisor)})
    with running.client("alice") as client:
        with pytest.raises(IsolationUnavailable, match="user_space_kernel"):
            client.create_session()
        assert client.sessions() == []
        events, _ = client.audit(limit=1000)
    refused = [e for e in events if e["event"] == "session.refused"]
    assert len(refused) == 1
    assert refused[0]["missing"] == ["user_space_kernel"]
