"""Isolation is granted only when demonstrated, and the default refuses less than it.

A property counts only if a probe inside the sandbox showed it in this run (checked against
what the host sees of that sandbox); a failed or partial probe grants nothing. The default
policy refuses a machine without bubblewrap, naming what is missing and how to get it; the
weaker fallback runs only under a policy that asks for it, and the audit log says so.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from rlmbox.audit.reader import iter_records
from rlmbox.errors import IsolationUnavailable, SandboxUnavailable
from rlmbox.lm.scripted import ScriptedLM
from rlmbox.runtime.runtime import Runtime
from rlmbox.sandboxes import probe
from rlmbox.sandboxes.base import IsolationProperty as P
from rlmbox.sandboxes.base import ResourceLimits, SandboxSpec
from rlmbox.sandboxes.process import jail
from rlmbox.sandboxes.process.backend import ProcessBackend

LIMITS = ResourceLimits()
FULL_FACTS: dict[str, Any] = {
    "uid": 65534, "pid": 2, "cap_eff": "0000000000000000", "no_new_privs": "1",
    "seccomp": "2", "ifaces": ["lo"], "inet_socket": False, "host_root_visible": False,
    "usr_writable": False, "pids_in_view": 2, "rlimit_as": 1 << 30, "rlimit_cpu": 300,
    "writable_bytes": {"/tmp": LIMITS.disk_bytes}}


def test_full_facts_grant_what_they_show() -> None:
    assert probe.observed_properties(FULL_FACTS, LIMITS) >= {
        P.NETWORK_NONE, P.PID_NAMESPACE, P.DISK_LIMIT, P.FILESYSTEM_PRIVATE, P.SECCOMP}


@pytest.mark.parametrize("missing", sorted(probe.REQUIRED_FACTS))
def test_empty_or_partial_facts_grant_nothing(missing: str) -> None:
    assert probe.observed_properties({}, LIMITS) == frozenset()
    partial = {k: v for k, v in FULL_FACTS.items() if k != missing}
    assert probe.observed_properties(partial, LIMITS) == frozenset()


def test_network_none_needs_a_network_namespace_not_only_seccomp() -> None:
    """An AF_INET socket refused by seccomp, with the host's interfaces in view, is not
    'no network'; nor is an interface list that could not be read."""
    host_net = {**FULL_FACTS, "ifaces": ["eth0", "lo"], "inet_socket": False}
    assert P.NETWORK_NONE not in probe.observed_properties(host_net, LIMITS)
    unread = {k: v for k, v in FULL_FACTS.items() if k != "ifaces"} | {"ifaces_error": "x"}
    assert P.NETWORK_NONE not in probe.observed_properties(unread, LIMITS)


def test_host_pids_in_view_and_unbounded_disk_are_not_claimed() -> None:
    seen = {**FULL_FACTS, "pids_in_view": 250,
            "writable_bytes": {"/tmp": LIMITS.disk_bytes, "/dev/shm": 8 << 30}}
    props = probe.observed_properties(seen, LIMITS)
    assert P.PID_NAMESPACE not in props
    assert P.DISK_LIMIT not in props


def test_a_failed_probe_run_grants_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe, "PROBE_CELL", "raise RuntimeError('probe broken')")
    backend = ProcessBackend()
    report = backend.probe()
    assert report.available is False
    assert report.properties == frozenset()
    with pytest.raises(SandboxUnavailable):
        backend.properties()
    assert report.declared, "doctor still shows what the set-up declares, apart"


@pytest.fixture
def no_bwrap_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without bubblewrap: PATH holds every tool we need but bwrap."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("python3", "sh"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert shutil.which("bwrap") is None


def _records(directory: Path) -> list[dict[str, Any]]:
    return list(iter_records(directory))


@pytest.mark.usefixtures("no_bwrap_path")
def test_the_default_refuses_a_machine_without_bubblewrap(tmp_path: Path) -> None:
    rt = Runtime(policy="default", lm=ScriptedLM(default="x"), audit_dir=tmp_path / "a",
                 pool_size=0)
    try:
        with pytest.raises(IsolationUnavailable) as refused:
            rt.session()
    finally:
        rt.close()
    message = str(refused.value)
    for missing in ("filesystem_private", "pid_namespace", "disk_limit"):
        assert missing in message
    assert "apt-get install bubblewrap" in message
    assert [r for r in _records(tmp_path / "a") if r["event"] == "session.refused"]


@pytest.mark.skipif(os.geteuid() != 0, reason="the fallback's namespaces and cgroup need root")
@pytest.mark.usefixtures("no_bwrap_path")
def test_the_fallback_runs_only_by_opt_in_and_the_audit_log_says_so(tmp_path: Path) -> None:
    rt = Runtime(policy="process-fallback", lm=ScriptedLM(default="x"),
                 audit_dir=tmp_path / "a", pool_size=0)
    try:
        with rt.session() as session:
            assert session.exec("print(1 + 1)").stdout == "2\n"
    finally:
        rt.close()
    created = [r for r in _records(tmp_path / "a") if r["event"] == "session.create"]
    assert created[0]["policy"] == "process-fallback"
    assert created[0]["sandbox"]["runtime"] == "rlimits"
    assert "pid_namespace" not in created[0]["properties"]


@pytest.mark.skipif(os.geteuid() != 0, reason="the fallback unshares namespaces only as root")
def test_a_failed_unshare_in_the_fallback_refuses_the_sandbox(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An ``unshare`` that fails (here ``false`` in its place) stands for any failure: no
    sandbox starts without the network namespace it was meant to have."""
    found = jail._tool
    monkeypatch.setattr(jail, "_tool", lambda name: "/bin/false" if name == "unshare"
                        else found(name))
    with pytest.raises(SandboxUnavailable, match="did not start"):
        ProcessBackend(use_bwrap=False).create(SandboxSpec()).kill()
