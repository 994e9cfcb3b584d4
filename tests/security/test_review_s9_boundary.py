"""Review s9 of the sandbox start path and seam (review_boundary, issue 16's cold start and
context reservation): attacks that broke a documented promise.

Each test performs the attack and asserts the promise; each failed when it was written, and
passes since its fix (the cgroup namespace: the host-held join was reverted; the str
subclass: staging copies it to an exact ``str`` first). A third finding, a failed start
releasing bubblewrap unjoined, went with the host-held join it attacked. All run on the
``process`` backend, where the changes are.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rlmbox.lm.scripted import ScriptedLM
from rlmbox.runtime.runtime import Runtime
from rlmbox.runtime.staging import RESERVE_FROM_CHARS
from rlmbox.sandboxes.bundle import agent_bundle_dir

from .harness import policy_yaml, run_json, skip_on_e2b


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    path = tmp_path / "policy.yaml"
    path.write_text(policy_yaml("process"))
    rt = Runtime(policy=path, lm=ScriptedLM(default="ok"), audit_dir=tmp_path / "audit",
                 pool_size=0)
    yield rt
    rt.close()


# --- 1. the cgroup namespace is rooted at the host's cgroup, not the sandbox's -----------

def test_the_cgroup_namespace_hides_the_hosts_cgroup_hierarchy(runtime: Runtime) -> None:
    """security.md (process row), README: bubblewrap gives the sandbox a new cgroup
    namespace. A cgroup namespace's root is the cgroup its creator was in when it was made:
    with the ``sh`` join before bubblewrap (a5ff6dc) that was the sandbox's own, and model
    code saw ``/`` on every line of /proc/self/cgroup. Since 632c883 bubblewrap clones its
    namespaces (the cgroup one included) while still in the host's cgroup and the host moves
    it after, so the namespace is rooted at the host's cgroup: model code reads its host
    cgroup path (``/rlmbox/p-<id>``, the host's own container cgroup as ``/../..``), and the
    namespace no longer bounds a migration to the sandbox's subtree."""
    backend = runtime.backend("process")
    if not getattr(backend, "_cgroups", None) or getattr(backend, "_bwrap", None) is None:
        pytest.skip("a cgroup and bubblewrap are needed (root)")
    with runtime.session() as session:
        result = session.exec("print(open('/proc/self/cgroup').read(), end='')")
    assert result.status == "ok", result.error
    lines = [line for line in result.stdout.splitlines() if line]
    assert lines
    outside = [line for line in lines if line.split(":", 2)[2] != "/"]
    assert not outside, f"model code sees cgroup paths outside its namespace root: {outside}"


# --- 3. a str whose len() and isascii() lie is read as ASCII into a reserved string -------

class _LyingText(str):
    """A str subclass (a caller's own text type) whose ``len`` counts UTF-8 bytes and
    whose ``isascii`` says yes."""

    __slots__ = ()

    def isascii(self) -> bool:
        return True

    def __len__(self) -> int:
        return len(str(self).encode())


def test_a_context_of_a_str_subclass_arrives_byte_for_byte(runtime: Runtime) -> None:
    """README / test_context_load: a ``str`` context arrives byte for byte. staging.py's
    ``_announce`` asks the context itself (``context.isascii()``, ``len(context)``) whether
    to send ``reserve``, and the agent keeps the reserved string when the file's size equals
    its length. A str subclass whose methods disagree with its characters gets a reservation
    of its UTF-8 size; the agent then reads UTF-8 bytes into a string CPython believes is
    ASCII: a malformed ``str`` (wrong length, ``isascii()`` true of non-ASCII text) in the
    agent, where a bad invariant of the interpreter's is model code's to play with."""
    real = ("caf\u00e9-" * (RESERVE_FROM_CHARS // 5 + 1))[:RESERVE_FROM_CHARS + 3]
    digest = hashlib.sha256(real.encode()).hexdigest()
    with runtime.session(context=_LyingText(real)) as session:
        result = session.exec(
            "import hashlib; print(len(context), context.isascii(), "
            "hashlib.sha256(context.encode('utf-8', 'surrogatepass')).hexdigest())")
    assert result.status == "ok", result.error
    assert result.stdout.split() == [str(str.__len__(real)), "False", digest]


# --- 4. the shipped bytecode: no sandbox plants a .pyc the next one loads (holds) ---------

PLANT_BYTECODE = r"""
import glob, json, os
out = {"pycs": 0, "written": []}
root = "/rlmbox"
for path in glob.glob(root + "/**/__pycache__/*.pyc", recursive=True):
    out["pycs"] += 1
    for attempt in ("overwrite", "rename", "unlink"):
        try:
            if attempt == "overwrite":
                with open(path, "r+b") as handle:
                    handle.write(b"pwned")
            elif attempt == "rename":
                os.rename(path, path + ".aside")
            else:
                os.unlink(path)
            out["written"].append(attempt + " " + path)
        except OSError:
            pass
for folder in glob.glob(root + "/**/", recursive=True):
    cache = os.path.join(folder, "__pycache__")
    try:
        os.makedirs(cache, exist_ok=True)
        with open(os.path.join(cache, "planted.cpython-311.pyc"), "wb") as handle:
            handle.write(b"pwned")
        out["written"].append("plant " + cache)
    except OSError:
        pass
print(json.dumps(out))
"""


def test_no_sandbox_can_plant_bytecode_the_next_one_loads(
        backend: str, runtimes: Any) -> None:
    """security.md 10: the shared agent bundle is read-only, "so one sandbox cannot plant
    code for the next". Since 632c883 the bundle ships bytecode beside its sources and the
    agent loads it; ``test_read_only_mounts_stay_read_only`` writes only the ``.py`` files.
    Here model code overwrites, renames and deletes every shipped ``.pyc`` and plants one
    in every folder: all refused, the host's bundle unchanged. Holds today (a guard)."""
    skip_on_e2b(backend, "the e2b bundle is unpacked per sandbox, no shared host copy")
    bundle = agent_bundle_dir()
    before = _digest_tree(bundle)
    with runtimes().session() as session:
        seen = run_json(session, PLANT_BYTECODE)
    if backend == "process":
        assert seen["pycs"] > 0, "no shipped bytecode in view: the attack aimed at nothing"
    assert seen["written"] == []
    assert _digest_tree(bundle) == before, "the shared agent bundle was modified"


def _digest_tree(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()
