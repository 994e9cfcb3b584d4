"""Context staging: bind mount locally, archive copy for a remote engine; 1 GB works."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from docker_helpers import answer, run

from rlmbox.errors import SandboxError
from rlmbox.sandboxes.base import SandboxSpec
from rlmbox.sandboxes.docker.backend import DockerBackend
from rlmbox.sandboxes.docker.host_kill import REMOVALS

pytestmark = pytest.mark.docker
GIB = 1 << 30
MARKER = b"--end-of-context"


def _big_file(path: Path, mode: int) -> Path:
    with path.open("wb") as f:
        f.truncate(GIB - len(MARKER))
        f.seek(GIB - len(MARKER))
        f.write(MARKER)
    path.chmod(mode)
    return path


def _probe(inside: str) -> str:
    return (f"import os\nf = open({inside!r}, 'rb')\nf.seek(-{len(MARKER)}, 2)\n"
            f"answer = [os.path.getsize({inside!r}), f.read().decode()]")


@pytest.mark.slow
@pytest.mark.parametrize("mode", [0o644, 0o600], ids=["hardlink", "copy"])
def test_one_gib_through_a_bind_mount(backend: DockerBackend, tmp_path: Path, mode: int) -> None:
    source = _big_file(tmp_path / "big.bin", mode)
    sandbox = backend.create(SandboxSpec())
    try:
        inside = sandbox.stage(source, "big.bin")
        assert answer(sandbox, _probe(inside)) == [GIB, MARKER.decode()]
    finally:
        sandbox.kill()
    assert not list((tmp_path / "stage").glob("rlmbox-*")), "staging directory left behind"


@pytest.mark.slow
def test_one_gib_through_the_archive_api(backend: DockerBackend, engine: Any,
                                         tmp_path: Path) -> None:
    """The path a remote engine takes: a per-sandbox volume filled by put_archive."""
    remote_style = DockerBackend(backend.runtime, image=backend.image(),
                                 agent_dir=backend.agent_dir(), client=engine,
                                 stage_mode="archive", transport="stdio")
    source = _big_file(tmp_path / "big.bin", 0o600)
    sandbox = remote_style.create(SandboxSpec())
    try:
        inside = sandbox.stage(source, "big.bin")
        assert answer(sandbox, _probe(inside)) == [GIB, MARKER.decode()]
        frame = run(sandbox, f"open({inside!r}, 'ab').write(b'x')")
        assert frame["status"] == "error"
    finally:
        sandbox.kill()
    assert REMOVALS.wait(60)   # a local engine's removals (the volume after its container)
    volumes = engine.api.volumes(filters={"name": sandbox.info.sandbox_id}).get("Volumes")
    assert not volumes, "context volume left behind"


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", "", "x" * 200])
def test_bad_context_names_are_refused(sandbox: Any, tmp_path: Path, name: str) -> None:
    source = tmp_path / "f"
    source.write_text("x")
    with pytest.raises(SandboxError, match="context name"):
        sandbox.stage(source, name)


def test_non_regular_files_are_refused(sandbox: Any, tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="not a regular file"):
        sandbox.stage(tmp_path, "dir")
    (tmp_path / "link").symlink_to("/etc/shadow")
    with pytest.raises(SandboxError, match=r"not a regular file|cannot stage"):
        sandbox.stage(tmp_path / "link", "shadow")
