"""Each process jail runs as a host uid of its own (when rlmbox runs as root).

uid 65534 ("nobody") is shared with every service that drops to it. A host process with
the sandbox's uid could read the sandbox's stage (the staged context), signal its
processes, or ptrace them (their user namespace is owned by that uid). So every jail leases
a uid from a range no account uses, held for the jail's life and never shared by two live
jails; these cases attack from ``nobody`` and compare two live sandboxes.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlmbox.runtime.runtime import Runtime
from rlmbox.sandboxes.process.uids import LEASE_DIR, UID_BASE, UID_SPAN, lease_uid

from .harness import SANDBOX_UID, policy_yaml, watched_session

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the uid drop needs root")


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[Runtime]:
    path = tmp_path / "policy.yaml"
    path.write_text(policy_yaml("process"))
    runtime = Runtime(policy=path, audit_dir=tmp_path / "audit", pool_size=0)
    yield runtime
    runtime.close()


def _host_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")


def _signal_as_nobody(pid: int) -> str:
    """``kill -0`` from a host process running as nobody: 'sent' or the errno's name."""
    probe = (f"import os, errno\ntry:\n    os.kill({pid}, 0)\n    print('sent')\n"
             "except OSError as e:\n    print(errno.errorcode[e.errno])")

    def drop() -> None:
        os.setgroups([])
        os.setresgid(SANDBOX_UID, SANDBOX_UID, SANDBOX_UID)
        os.setresuid(SANDBOX_UID, SANDBOX_UID, SANDBOX_UID)
    return subprocess.run(["/usr/bin/python3", "-I", "-c", probe], capture_output=True,
                          text=True, timeout=30, preexec_fn=drop, check=True,
                          cwd="/").stdout.strip()


def test_two_live_sandboxes_run_as_distinct_uids_no_account_has(rt: Runtime) -> None:
    accounts = {entry.pw_uid for entry in pwd.getpwall()}
    with watched_session(rt) as (first, _), watched_session(rt) as (second, _):
        uids = [_host_uid(s.sandbox.host_pids()[-1])   # type: ignore[attr-defined]
                for s in (first, second)]
        assert uids[0] != uids[1]
        for uid in uids:
            assert UID_BASE <= uid < UID_BASE + UID_SPAN
            assert uid not in accounts
        # what runs inside still sees itself as nobody (its own user namespace)
        assert first.exec("import os; print(os.getuid())").stdout == f"{SANDBOX_UID}\n"


def test_a_host_process_running_as_nobody_cannot_signal_a_sandbox(rt: Runtime) -> None:
    with watched_session(rt) as (session, _):
        for pid in session.sandbox.host_pids():   # type: ignore[attr-defined]
            assert _signal_as_nobody(pid) == "EPERM"


def test_a_closed_sandboxs_uid_lease_is_returned(rt: Runtime) -> None:
    """Leases are held by a lock for the jail's life: after close the uid is free again,
    and while a lease is held no other lease can take its uid."""
    held = lease_uid()
    try:
        with watched_session(rt) as (session, _):
            uid = _host_uid(session.sandbox.host_pids()[-1])   # type: ignore[attr-defined]
            assert uid != held.uid
        again = lease_uid(prefer=uid)
        try:
            assert again.uid == uid
        finally:
            again.release()
    finally:
        held.release()


def test_a_uid_some_process_runs_as_is_not_leased_even_without_its_lease_file(
        rt: Runtime) -> None:
    """An rlmbox in another mount namespace (its own /run), or lease files removed under a
    live jail, must not hand out a uid a live process still runs as."""
    with watched_session(rt) as (session, _):
        uid = _host_uid(session.sandbox.host_pids()[-1])   # type: ignore[attr-defined]
        lock_file = LEASE_DIR / str(uid)
        lock_file.unlink()   # as if another namespace's /run/rlmbox: no lock to see
        lease = lease_uid(prefer=uid)
        try:
            assert lease.uid != uid
        finally:
            lease.release()
