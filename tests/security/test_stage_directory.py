"""The Docker stage directory: another local user can neither plant it nor read from it.

Contexts for bind-mounted sandboxes are staged under a predictable path
(/tmp/rlmbox-stage-<uid>). Each case is a local attacker (uid 65534) acting on it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlmbox.errors import SandboxError
from rlmbox.sandboxes.docker.stage import BindStager

ATTACKER_UID = 65534
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="acting as another uid needs root")


def _as_attacker(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/usr/bin/python3", "-I", "-c", code], capture_output=True, text=True, timeout=30,
        user=ATTACKER_UID, group=ATTACKER_UID, extra_groups=[], check=False)


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A sticky, world-writable directory like /tmp (and reachable like it: pytest's own
    tmp_path sits under a 0700 directory), where the stage root lives."""
    public = Path(tempfile.mkdtemp(prefix="rlmbox-public-", dir="/tmp"))
    public.chmod(0o1777)
    try:
        yield public
    finally:
        shutil.rmtree(public, ignore_errors=True)


def test_a_stage_root_the_attacker_made_first_is_refused(public_dir: Path) -> None:
    root = public_dir / "rlmbox-stage-0"
    made = _as_attacker(f"import os; os.mkdir({str(root)!r}, 0o777); "
                        f"os.chmod({str(root)!r}, 0o777)")
    assert made.returncode == 0, made.stderr
    with pytest.raises(SandboxError, match="another user"):
        BindStager.create(root, "rlmbox-ctx")
    assert list(root.iterdir()) == []


def test_a_symlink_in_place_of_the_stage_root_is_not_followed(public_dir: Path,
                                                              tmp_path: Path) -> None:
    elsewhere = tmp_path / "attacker-owned"
    elsewhere.mkdir(mode=0o700)
    root = public_dir / "rlmbox-stage-0"
    root.symlink_to(elsewhere)
    with pytest.raises(SandboxError, match="not a directory rlmbox made"):
        BindStager.create(root, "rlmbox-ctx")
    assert list(elsewhere.iterdir()) == []


def test_our_stage_root_with_loose_modes_is_closed(public_dir: Path) -> None:
    """A root of ours left 0711 by an older rlmbox is made 0700 before anything is staged."""
    root = public_dir / "rlmbox-stage-0"
    root.mkdir(mode=0o711)
    root.chmod(0o711)
    BindStager.create(root, "rlmbox-ctx").discard()
    assert root.stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("mode", [0o644, 0o600], ids=["hardlink", "copy"])
def test_staged_contexts_are_unreadable_by_another_uid(public_dir: Path, tmp_path: Path,
                                                       mode: int) -> None:
    source = tmp_path / "context.txt"
    source.write_text("confidential context")
    source.chmod(mode)
    stager = BindStager.create(public_dir / "rlmbox-stage-0", "rlmbox-ctx")
    try:
        stager.stage(source, "context.txt")
        staged = stager.host_dir / "context.txt"
        assert staged.read_text() == "confidential context"
        attempt = _as_attacker(
            f"import os\nfor p in ({str(staged)!r}, {str(stager.host_dir)!r}):\n"
            "    try:\n        print(open(p).read() if p.endswith('.txt') else os.listdir(p))\n"
            "    except OSError as e:\n        print('denied', e.errno)\n")
    finally:
        stager.discard()
    assert attempt.returncode == 0, attempt.stderr
    assert "confidential" not in attempt.stdout
    assert attempt.stdout.split("\n")[:2] == ["denied 13", "denied 13"]
