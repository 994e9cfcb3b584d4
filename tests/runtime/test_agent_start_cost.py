"""What a cold sandbox pays before it says ready, pinned (issue 16: cold start).

Every process sandbox starts a fresh interpreter, so each module the agent imports and each
source file it compiles is paid at every cold start: the shipped bundle carries its
bytecode, and the confinement module keeps clear of the costly standard-library imports.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from rlmbox.sandboxes.bundle import BUNDLE_FILES, write_bundle

# a few milliseconds each at every start (dataclasses pulls in inspect, ast and dis)
COSTLY = ("dataclasses", "inspect", "ast", "dis", "platform")


def test_confinement_imports_none_of_the_costly_modules(tmp_path: Path) -> None:
    write_bundle(tmp_path)
    probe = (f"import sys, json\nsys.path.insert(0, {str(tmp_path)!r})\n"
             "before = set(sys.modules)\n"
             "import rlmbox.sandboxes.process.confine\n"
             "print(json.dumps(sorted(set(sys.modules) - before)))\n")
    done = subprocess.run([sys.executable, "-I", "-S", "-c", probe], capture_output=True,
                          text=True, check=True, cwd=tmp_path)
    loaded = set(json.loads(done.stdout))
    assert not loaded & set(COSTLY), sorted(loaded & set(COSTLY))


def test_the_bundle_ships_bytecode_the_sandbox_reads_without_compiling(
        tmp_path: Path) -> None:
    """The sandbox runs with ``-B`` on a read-only bundle: without shipped bytecode every
    start compiles every module again."""
    write_bundle(tmp_path)
    for inside, _ in BUNDLE_FILES:
        cached = Path(importlib.util.cache_from_source(str(tmp_path / inside)))
        assert cached.is_file(), inside
        assert cached.read_bytes()[:4] == importlib.util.MAGIC_NUMBER, inside
        assert cached.stat().st_mode & 0o004, f"{inside}: the sandbox's uid cannot read it"


def test_the_bundle_imports_from_its_bytecode(tmp_path: Path) -> None:
    """An import that took the shipped bytecode never reads the source: a source the
    bytecode was made from, replaced by one of the same size and time, is not run."""
    write_bundle(tmp_path)
    source = tmp_path / "rlmbox/sandboxes/agent/reaper.py"
    stat = source.stat()
    text = source.read_bytes()
    source.write_bytes(b"raise SystemExit(7)\n".ljust(len(text), b"#"))
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    probe = (f"import sys\nsys.path.insert(0, {str(tmp_path)!r})\n"
             "import rlmbox.sandboxes.agent.reaper\n")
    done = subprocess.run([sys.executable, "-I", "-B", "-S", "-c", probe],
                          capture_output=True, text=True, check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stderr


def _loaded_before_ready(bundle: Path) -> set[str]:
    """The modules loaded by everything the agent imports before ``ready`` (main and
    its preload)."""
    write_bundle(bundle)
    probe = (f"import sys, json\nsys.path.insert(0, {str(bundle)!r})\n"
             "import rlmbox.sandboxes.agent.main as main\nmain._preload()\n"
             "print(json.dumps(sorted(sys.modules)))\n")
    done = subprocess.run([sys.executable, "-I", "-S", "-c", probe], capture_output=True,
                          text=True, check=True, cwd=bundle)
    return set(json.loads(done.stdout))


def test_the_agent_says_ready_without_importing_typing(tmp_path: Path) -> None:
    """The agent's annotations are for mypy alone (about 2 ms of import otherwise)."""
    assert "typing" not in _loaded_before_ready(tmp_path)
