"""A cell is interruptible whatever signal mask the host process had: a host that blocks
SIGINT in its threads (Ray's workers do; so may any embedding program) hands that mask to
every child it forks, and an agent that kept it could never be interrupted (every
timed-out cell would be killed, its namespace lost)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import write_policy

REPO = Path(__file__).resolve().parents[2]
PROBE = """
import signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})   # before any sandbox thread
from rlmbox.runtime.runtime import Runtime
with Runtime(sys.argv[1], pool_size=0, audit_dir=sys.argv[2]) as rt, rt.session() as s:
    s.exec("kept = 7")
    print(s.exec("import time\\ntime.sleep(30)", timeout=1).status)
    print(s.exec("print(kept)").stdout.strip())
"""


def test_a_cell_is_interrupted_even_when_the_host_blocks_sigint(tmp_path: Path) -> None:
    policy = write_policy(tmp_path, isolation={"backend": "process"})
    done = subprocess.run([sys.executable, "-c", PROBE, str(policy), str(tmp_path / "audit")],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["interrupted", "7"]
