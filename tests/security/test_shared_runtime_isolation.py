"""A shared runtime (one per policy and audit sink, borrowed by every completion's rlms
environment) hands each session a fresh warm sandbox: what one completion leaves behind,
variables, files or a running process, never reaches the next, whose ledger is its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rlmbox.runtime.runtime import Runtime
from rlmbox.runtime.shared import close_shared_runtimes, shared_runtime

from .harness import events, policy_yaml

WAIT_S = 120.0

LEAVE_BEHIND = """
import os, subprocess, sys
left = 'secret'
written = []
for folder in ('/tmp', os.getcwd()):
    try:
        with open(os.path.join(folder, 'left-behind'), 'w') as handle:
            handle.write('secret')
        written.append(folder)
    except OSError:   # a backend whose working directory is read-only
        pass
assert '/tmp' in written
sleeper = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])
print(sleeper.pid)
"""

LOOK = """
import os
found = [name for name in ('left',) if name in globals()]
found += [folder for folder in ('/tmp', os.getcwd())
          if os.path.exists(os.path.join(folder, 'left-behind'))]
for pid in os.listdir('/proc'):
    if pid.isdigit():
        try:
            with open(f'/proc/{pid}/cmdline', 'rb') as handle:
                if b'time.sleep(300)' in handle.read():
                    found.append('sleeper ' + pid)
        except OSError:
            pass
print(found)
"""


@pytest.fixture
def shared(backend: str, tmp_path: Path) -> Iterator[Runtime]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_yaml(backend))
    try:
        yield shared_runtime(policy, audit_dir=tmp_path / "audit", pool_size=1)
    finally:
        close_shared_runtimes()


def test_a_borrowed_warm_sandbox_holds_nothing_of_the_last_session(shared: Runtime) -> None:
    first = shared.session()
    try:
        left = first.exec(LEAVE_BEHIND)
        assert left.ok, left.error
    finally:
        first.close()
    pool = shared.pool()
    assert pool is not None
    assert pool.wait_full(WAIT_S)
    second = shared.session()
    try:
        looked = second.exec(LOOK)
        assert looked.stdout == "[]\n", looked.stdout
        assert second.ledger is not first.ledger
        assert second.sandbox.info.sandbox_id != first.sandbox.info.sandbox_id
        created = events(shared, "session.create", session=second.id)
        assert created[0]["sandbox"]["warm"] is True
    finally:
        second.close()
