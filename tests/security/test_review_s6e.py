"""Review s6e: attacks on the exec'd jail entry (``jail.jail_entry_argv``), the read-only
mapped context and the in-place audit canonicalisation.

Most attacks held (listed in the review report). What broke: a jail start that fails
while its command line is built (an entry program not installed) leaves the host holding
the two ends of the bubblewrap info pipe, which ``ProcessSandbox._start`` opens before it
builds the command line and closes only around ``Popen``.
"""

from __future__ import annotations

import os

import pytest

from rlmbox.errors import SandboxUnavailable
from rlmbox.sandboxes.base import SandboxSpec
from rlmbox.sandboxes.process import jail
from rlmbox.sandboxes.process.backend import ProcessBackend


def _open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


def test_a_start_refused_for_a_missing_entry_program_leaves_no_host_fd(
        monkeypatch: pytest.MonkeyPatch) -> None:
    backend = ProcessBackend()
    if backend._bwrap is None:
        pytest.skip("the info pipe exists only with bubblewrap")
    backend.probe()   # the probe's own sandbox, before the tool goes missing

    def missing(name: str) -> str:
        raise SandboxUnavailable(f"cannot build a jail: {name} is not installed")

    monkeypatch.setattr(jail, "_tool", missing)
    before = _open_fds()
    for _ in range(3):
        with pytest.raises(SandboxUnavailable, match="not installed"):
            backend.create(SandboxSpec()).kill()
    leaked = _open_fds() - before
    assert not leaked, {fd: os.readlink(f"/proc/self/fd/{fd}") for fd in leaked}
