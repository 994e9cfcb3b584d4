"""Review s5c: attacks on the process-wide shared runtime (``runtime/shared.py``) and the
Docker removals queue (``sandboxes/docker/host_kill.py`` ``Removals``).

Each test performs the attack and asserts the promise the docs make; those marked
``xfail(strict=True)`` succeed today (remove the mark once fixed).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from rlmbox.audit.log import AuditLog
from rlmbox.policies.model import load_policy
from rlmbox.runtime.shared import close_shared_runtimes, shared_runtime
from rlmbox.sandboxes.docker.host_kill import Removals

from .harness import require_backend

REPO = Path(__file__).resolve().parents[2]


def test_two_policies_with_one_digest_never_share_a_runtime(tmp_path: Path) -> None:
    """runtime/shared.py: a shared runtime is keyed by "what a session's guarantees depend
    on: the policy's digest". A policy derived in code the pydantic way
    (``model_copy(update=...)``, cell wall time 300 s instead of 30 s) carries the digest
    of the policy it was copied from, so whichever of the two asks second gets the first
    one's runtime: its sessions run under the other policy's limits, and the audit log's
    ``policy_sha256`` names a policy that is not the one in force."""
    strict = load_policy("default")
    loose = strict.model_copy(update={"limits": strict.limits.model_copy(
        update={"cell_timeout_s": strict.limits.cell_timeout_s * 10})})
    log = AuditLog(tmp_path / "audit")   # one open sink, as rlms environments share one
    try:
        first = shared_runtime(strict, audit=log, pool_size=1)
        second = shared_runtime(loose, audit=log, pool_size=1)
        assert first.policy.limits.cell_timeout_s == strict.limits.cell_timeout_s
        assert second.policy.limits.cell_timeout_s == loose.limits.cell_timeout_s, (
            "the looser policy's environments run under the stricter one's runtime")
    finally:
        close_shared_runtimes()
        log.close()


def test_a_forked_process_never_borrows_its_parents_shared_runtime(tmp_path: Path) -> None:
    """runtime/shared.py: the key holds the process id, "a forked child never borrows its
    parent's pool". Held: the child gets a runtime of its own (with the parent's audit
    directory it is refused, ``AuditError``: the parent's writer holds its lock)."""
    parent = shared_runtime("default", audit_dir=tmp_path / "audit", pool_size=1)
    try:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                mine = shared_runtime("default", audit_dir=tmp_path / "child-audit",
                                      pool_size=1)
                code = 0 if mine is not parent and not parent.closed else 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the child borrowed its parent's runtime"
        assert not parent.closed
    finally:
        close_shared_runtimes()


def test_a_forked_process_runs_the_removals_it_queues(tmp_path: Path) -> None:
    """host_kill.py ``Removals``: removals run on a background thread and ``wait`` (and the
    interpreter's exit) waits for those queued. The thread is started once per process
    object: a process forked after the parent used the queue inherits ``_thread`` set but
    no thread, so a Docker sandbox closed in the child is killed, never removed, and the
    child's exit blocks in ``wait`` for its full 60 s."""
    removals = Removals()
    removals.add(lambda: None)
    assert removals.wait(5)
    marker = tmp_path / "removed"
    pid = os.fork()
    if pid == 0:   # the child: queue one removal, see it run
        code = 1
        try:
            removals.add(marker.touch)
            code = 0 if removals.wait(2) and marker.exists() else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child's removal never ran"


EXIT_WITH_OPEN_SHARED_RUNTIME = """
import os
import sys
from pathlib import Path
sys.path.insert(0, {repo!r})
from tests.security.harness import policy_yaml
import time
import rlmbox.sandboxes.docker.backend as docker_backend
from rlmbox.runtime.shared import shared_runtime
engine_remove = docker_backend._remove
def slower_engine(*args, **kwargs):   # an engine as slow as runsc's on a loaded host
    time.sleep(0.3)
    engine_remove(*args, **kwargs)
docker_backend._remove = slower_engine
work = Path({work!r})
(work / "policy.yaml").write_text(policy_yaml("docker-runc"))
runtime = shared_runtime(work / "policy.yaml", audit_dir=work / "audit", pool_size=1)
first = runtime.session()
first.close()   # a removal queued: the queue's exit wait is registered now
assert runtime.pool().wait_full(120)
second = runtime.session(context="left open: close_shared_runtimes closes it at exit")
assert runtime.pool().wait_full(120)
print("ready", os.getpid(), flush=True)
"""


def test_a_normal_exit_removes_the_shared_runtimes_containers(tmp_path: Path) -> None:
    """W2 (``close_shared_runtimes()``, run at interpreter exit, kills every warm sandbox)
    and host_kill.py (the interpreter's exit waits for the removals queued). The queue
    registers its exit wait on first use, after ``runtime/shared.py`` registered
    ``close_shared_runtimes`` at import: atexit runs the wait first, then closes the
    shared runtimes, whose kills queue removals nobody waits for. A process that exits
    normally leaves its warm (and open sessions') containers behind, stopped, whenever
    the engine's removal takes longer than the interpreter's shutdown (here it is made to
    take 0.3 s, so the race is lost every time; at full speed it is lost about half the
    time on a loaded host)."""
    require_backend("docker-runc")
    import docker

    script = EXIT_WITH_OPEN_SHARED_RUNTIME.format(repo=str(REPO), work=str(tmp_path))
    child = subprocess.run([sys.executable, "-c", textwrap.dedent(script)],
                           capture_output=True, text=True, timeout=240, check=False,
                           env={**os.environ, "PYTHONPATH": str(REPO)})
    assert "ready" in child.stdout, child.stderr[-2000:]
    client = docker.from_env(timeout=30)
    label = f"org.rlmbox.owner-pid={child.stdout.split()[-1]}"
    left: list[str] = []
    for _ in range(30):   # a removal the engine is still finishing is not a leftover
        left = [c["Names"][0] for c in client.api.containers(all=True,
                                                             filters={"label": label})]
        if not left:
            break
        time.sleep(0.1)
    for name in left:   # leave nothing behind for the next test
        client.api.remove_container(name.lstrip("/"), force=True, v=True)
    assert not left, f"a normal exit left these containers: {left}"

