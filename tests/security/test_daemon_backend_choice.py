"""A daemon client cannot choose a weaker backend than the operator's policy (issue 11,
finding 9): ``{"policy": "gvisor", "backend": "process"}`` must not run on the host kernel.

Each case is a policy on one backend; the client asks for every other backend name. The
refusal is a 403 ``BackendNotAllowed`` before any sandbox starts, and an audit event; the
policy's own backend still works, and ``isolation.allowed_backends`` widens the choice.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import get_args

import pytest

from rlmbox.daemon.lifecycle import DaemonConfig
from rlmbox.errors import DaemonError, PolicyError
from rlmbox.lm.scripted import ScriptedLM
from rlmbox.policies.model import BackendName, load_policy
from tests.daemon.conftest import RunningDaemon, policy_file, short_dir

from .harness import BACKEND_LIMITS, BASE_LIMITS, ISOLATION

ALL_BACKENDS: tuple[str, ...] = get_args(BackendName)


@pytest.fixture
def daemon_dir() -> Iterator[Path]:
    path = short_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _daemon(tmp_path: Path, sock: Path, backend: str, **isolation: object) -> RunningDaemon:
    policy = policy_file(tmp_path, "operator", isolation={**ISOLATION[backend], **isolation},
                         limits={**BASE_LIMITS, **BACKEND_LIMITS.get(backend, {})})
    return RunningDaemon(DaemonConfig(
        state_dir=tmp_path / "state", socket=sock / "rlmbox.sock",
        policies={"operator": load_policy(policy)}, lm=ScriptedLM(default="x")))


def test_a_client_cannot_pick_a_backend_the_policy_does_not_allow(
        backend: str, tmp_path: Path, daemon_dir: Path) -> None:
    """Every other backend name is a 403 and a ``session.refused`` event; no session."""
    own = ISOLATION[backend]["backend"]
    running = _daemon(tmp_path, daemon_dir, backend)
    try:
        with running.client("mallory") as client:
            for weaker in (name for name in ALL_BACKENDS if name != own):
                with pytest.raises(DaemonError) as refused:
                    client.create_session(policy="operator", backend=weaker)
                assert (refused.value.status, refused.value.type) == (403, "BackendNotAllowed")
                assert own in str(refused.value)
            assert client.sessions() == []
            events, _ = client.audit(limit=1000)
            info = client.create_session(policy="operator", backend=own)
            assert info["backend"] == own
            client.close_session(info["id"])
    finally:
        running.stop()
    refusals = [e for e in events if e["event"] == "session.refused"]
    assert sorted(e["backend"] for e in refusals) == sorted(
        name for name in ALL_BACKENDS if name != own)
    assert all(e["reason"] == "backend_not_allowed" and e["allowed"] == [own]
               and e["tenant"] == "mallory" for e in refusals)


def test_allowed_backends_lets_the_operator_widen_the_choice(
        tmp_path: Path, daemon_dir: Path) -> None:
    """A process policy that also allows ``docker``: ``e2b`` stays refused."""
    running = _daemon(tmp_path, daemon_dir, "process",
                      allowed_backends=["process", "docker"])
    try:
        with running.client("alice") as client:
            with pytest.raises(DaemonError, match="not allowed") as refused:
                client.create_session(backend="e2b")
            assert refused.value.status == 403
            info = client.create_session(backend="process")
            assert info["backend"] == "process"
            client.close_session(info["id"])
    finally:
        running.stop()


def test_a_policy_whose_allowed_backends_omit_its_own_is_refused(tmp_path: Path) -> None:
    path = policy_file(tmp_path, "odd", isolation={"backend": "docker",
                                                   "allowed_backends": ["process"]})
    with pytest.raises(PolicyError) as refused:
        load_policy(path)
    [problem] = refused.value.errors
    assert problem.startswith("isolation.allowed_backends: allowed_backends must include "
                              "the policy's own backend 'docker'")
