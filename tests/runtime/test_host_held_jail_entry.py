"""With bubblewrap, the host puts the sandbox in its cgroup while bubblewrap waits
(``--block-fd``), instead of exec'ing ``sh`` before it (issue 16: an exec of every cold
start). bubblewrap runs the agent only once the host released it, so the cgroup holds
before the agent's first instruction (test_jail_entry.py reads it, and the rlimits, on
the live agent); a host that cannot join it starts nothing.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any, ClassVar

import pytest

from rlmbox.errors import SandboxUnavailable
from rlmbox.sandboxes.base import SandboxSpec
from rlmbox.sandboxes.process import backend as process_backend
from rlmbox.sandboxes.process import jail
from rlmbox.sandboxes.process.backend import ProcessBackend


class _Recorded(subprocess.Popen[bytes]):
    """Popen that remembers every command line and pid it started."""

    started: ClassVar[list[tuple[list[str], int]]] = []

    def __init__(self, args: list[str], **kwargs: Any) -> None:
        super().__init__(args, **kwargs)
        _Recorded.started.append((list(args), self.pid))


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> ProcessBackend:
    backend = ProcessBackend()
    if backend._bwrap is None:
        pytest.skip("the host holds the jail's start only with bubblewrap")
    backend.probe()
    _Recorded.started.clear()
    monkeypatch.setattr(subprocess, "Popen", _Recorded)
    return backend


def test_a_bubblewrap_sandbox_starts_without_sh(backend: ProcessBackend) -> None:
    sandbox = backend.create(SandboxSpec())
    try:
        assert sandbox.host_view().cgroup_enforced or not backend._cgroups
    finally:
        sandbox.kill()
    [(argv, _)] = _Recorded.started
    programs = {Path(arg).name for arg in argv[:argv.index("--")]}
    assert "sh" not in programs, argv[:12]
    assert "--block-fd" in argv


def test_a_host_that_cannot_join_the_cgroup_starts_no_agent(
        backend: ProcessBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    if not backend._cgroups:
        pytest.skip("no cgroup without root")

    def refused(*_args: object) -> None:
        raise OSError(13, "cgroup.procs refused")

    monkeypatch.setattr(jail, "_join_cgroup", refused)
    with pytest.raises(SandboxUnavailable, match=r"cgroup\.procs refused"):
        backend.create(SandboxSpec())
    [(_, pid)] = _Recorded.started
    assert not Path(f"/proc/{pid}").exists(), "bubblewrap outlived the refused start"


def test_the_release_waits_for_both_bubblewrap_processes(
        backend: ProcessBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    """The outer bubblewrap and the namespace's init (the agent's parent-to-be) both join:
    a process forked later is born in the init's cgroup."""
    if not backend._cgroups:
        pytest.skip("no cgroup without root")
    seen: list[list[int]] = []
    join = jail.join_cgroup_from_host

    def recording(pids: list[int], *args: Any) -> None:
        seen.append(list(pids))
        join(pids, *args)

    monkeypatch.setattr(process_backend, "join_cgroup_from_host", recording)
    sandbox = backend.create(SandboxSpec())
    try:
        assert seen == [[_Recorded.started[0][1], *sandbox.host_pids()[1:]]]
        assert len(seen[0]) == 2
        assert os.getpid() not in seen[0]
    finally:
        sandbox.kill()
