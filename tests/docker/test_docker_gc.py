"""Containers whose owner process died are removed by `gc` and by the next backend start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from rlmbox.sandboxes.base import SandboxSpec
from rlmbox.sandboxes.docker.backend import DockerBackend
from rlmbox.sandboxes.owner import (
    LABEL_OWNER_HOST,
    LABEL_OWNER_PID,
    LABEL_OWNER_START,
    Owner,
    host_id,
    owner_gone,
)

pytestmark = pytest.mark.docker

OWNER_SCRIPT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from rlmbox.sandboxes.base import SandboxSpec
    from rlmbox.sandboxes.docker.backend import DockerBackend
    backend = DockerBackend(sys.argv[1], image=sys.argv[2], agent_dir=Path(sys.argv[3]),
                            stage_root=Path(sys.argv[4]), transport="stdio")
    sandbox = backend.create(SandboxSpec())
    print(sandbox.container_id, flush=True)
    time.sleep(600)
""")


def _orphan(backend: DockerBackend, agent_dir: Path, tmp_path: Path) -> str:
    """Starts an owner process that creates a sandbox, then SIGKILLs it."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER_SCRIPT, backend.runtime, backend.image(), str(agent_dir),
         str(tmp_path / "stage")], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert owner.stdout is not None
        container_id = owner.stdout.readline().strip()
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()
    assert len(container_id) == 64, "the owner process did not start a sandbox"
    return container_id


def _exists(engine: Any, container_id: str) -> bool:
    return bool(engine.api.containers(all=True, filters={"id": container_id}))


def test_gc_removes_containers_of_a_killed_owner(backend: DockerBackend, engine: Any,
                                                 agent_dir: Path, tmp_path: Path) -> None:
    orphan = _orphan(backend, agent_dir, tmp_path)
    assert _exists(engine, orphan)
    mine = backend.create(SandboxSpec())
    try:
        backend.collect_garbage()
        assert not _exists(engine, orphan)
        assert _exists(engine, mine.container_id), "a live owner's container was removed"
    finally:
        mine.kill()
    stage_dirs = list((tmp_path / "stage").glob("rlmbox-*"))
    assert stage_dirs == [], "the orphan's staging directory was left behind"


def test_next_backend_start_cleans_up(backend: DockerBackend, engine: Any, agent_dir: Path,
                                      tmp_path: Path) -> None:
    orphan = _orphan(backend, agent_dir, tmp_path)
    fresh = DockerBackend(backend.runtime, image=backend.image(), agent_dir=agent_dir,
                          client=engine, stage_root=tmp_path / "stage", transport="stdio")
    sandbox = fresh.create(SandboxSpec())
    sandbox.kill()
    assert not _exists(engine, orphan)


def test_owner_judgement() -> None:
    """Only a provably dead owner on this host and boot is judged gone."""
    me = Owner.current()
    assert not owner_gone(me.labels("s"))
    dead = {LABEL_OWNER_HOST: host_id(), LABEL_OWNER_PID: str(me.pid), LABEL_OWNER_START: "1"}
    assert owner_gone(dead)  # same pid, other start time: the pid was reused
    elsewhere = dict(dead, **{LABEL_OWNER_HOST: "other-machine/boot"})
    assert not owner_gone(elsewhere)
    name, machine, _ = host_id().split("/")
    rebooted = dict(dead, **{LABEL_OWNER_HOST: f"{name}/{machine}/old-boot"})
    assert owner_gone(rebooted)
    namesake = dict(dead, **{LABEL_OWNER_HOST: f"{name}/another-machine-id/old-boot"})
    assert not owner_gone(namesake)   # a hostname repeats across machines
    assert not owner_gone({})
    assert not owner_gone({LABEL_OWNER_HOST: host_id(), LABEL_OWNER_PID: "x"})
