"""The e2b backend end to end against the local test double: the unmodified SDK, the real
agent in a jail standing in for the microVM, the same frames, policy and audit."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from e2b_double import E2BDouble

from rlmbox.audit.reader import iter_records
from rlmbox.errors import SandboxUnavailable
from rlmbox.runtime.runtime import Runtime
from rlmbox.sandboxes.base import IsolationProperty as P
from rlmbox.sandboxes.owner import (
    LABEL_OWNER,
    LABEL_OWNER_PID,
    LABEL_SESSION,
    LABEL_TENANT,
)


def test_a_session_keeps_state_and_reaches_host_functions(
        e2b_runtime: Callable[..., Runtime]) -> None:
    """Cells share one namespace; llm_query is served by the host (the scripted LM)."""
    rt = e2b_runtime()
    with rt.session() as session:
        assert session.exec("x = 41").status == "ok"
        result = session.exec("print(x + 1, llm_query('hi'))")
    assert result.status == "ok", result.error
    assert result.stdout.split() == ["42", "lm-answer"]
    assert result.host_calls == 1


def test_the_sandbox_is_killed_at_session_end(e2b_runtime: Callable[..., Runtime],
                                              double: E2BDouble) -> None:
    rt = e2b_runtime()
    with rt.session() as session:
        sandbox_id = session.sandbox.info.sandbox_id
        assert sandbox_id in double.sandboxes
    assert sandbox_id not in double.sandboxes
    assert ("DELETE", f"/sandboxes/{sandbox_id}") in double.requests


def test_every_sandbox_is_tagged_and_internet_is_off(e2b_runtime: Callable[..., Runtime],
                                                     double: E2BDouble) -> None:
    """Owner, session and tenant metadata on the create; internet off unless asked."""
    rt = e2b_runtime(tenant="team-a", metadata={"project": "x"})
    with rt.session() as session:
        record = double.sandboxes[session.sandbox.info.sandbox_id]
        assert record.metadata[LABEL_TENANT] == "team-a"
        assert record.metadata[LABEL_OWNER_PID] == str(os.getpid())
        assert record.metadata[LABEL_SESSION].startswith("rlmbox-")
        assert LABEL_OWNER in record.metadata
        assert record.metadata["project"] == "x"
        assert record.internet is False
        assert P.NETWORK_NONE in session.sandbox.properties


def test_internet_on_is_passed_and_drops_network_none(e2b_runtime: Callable[..., Runtime],
                                                      double: E2BDouble) -> None:
    rt = e2b_runtime(internet=True)
    with rt.session() as session:
        assert double.sandboxes[session.sandbox.info.sandbox_id].internet is True
        assert P.NETWORK_NONE not in session.sandbox.properties


def test_a_context_arrives_as_an_uploaded_file(e2b_runtime: Callable[..., Runtime],
                                               double: E2BDouble) -> None:
    """A 12 MB context (over the frame cap) is uploaded with the files API, not framed."""
    text = "abcdefghij" * 1_200_000
    rt = e2b_runtime()
    with rt.session(context=text) as session:
        result = session.exec("print(len(context), context[-3:])")
    assert result.stdout.split() == [str(len(text)), "hij"]
    uploads = [path for method, path in double.requests if (method, path) == ("POST", "/files")]
    assert len(uploads) >= 2   # the agent, then the context


def test_an_interrupt_reaches_the_cell(e2b_runtime: Callable[..., Runtime]) -> None:
    """A cell past its wall time is interrupted (SIGINT in the VM) and the session lives."""
    rt = e2b_runtime()
    with rt.session() as session:
        result = session.exec("import time\ntry:\n    time.sleep(60)\n"
                              "except KeyboardInterrupt:\n    print('stopped')\n")
        assert result.status == "interrupted"
        assert result.stdout.strip() == "stopped"
        assert session.exec("print('alive')").stdout.strip() == "alive"


def test_the_api_key_never_enters_the_sandbox(e2b_runtime: Callable[..., Runtime],
                                              double: E2BDouble) -> None:
    """The key is in the host's environment only: not in the create request's envVars,
    the agent's environment, nor any file the VM can read."""
    rt = e2b_runtime()
    with rt.session() as session:
        result = session.exec(
            "import os, subprocess\n"
            "print(sorted(os.environ))\n"
            "print(subprocess.run(['grep', '-rl', os.environ.get('NOPE', '') or "
            f"{double.api_key!r}, '/home/user', '/tmp', '/proc/self/environ'], "
            "capture_output=True, text=True).stdout or 'no-file')\n")
    assert result.status == "ok", result.error
    assert double.api_key not in result.stdout.split("\n")[0]
    assert "E2B" not in result.stdout.split("\n")[0]
    assert "no-file" in result.stdout
    assert all(not body.get("envVars") for body in double.created)


def test_a_create_names_a_missing_template(e2b_runtime: Callable[..., Runtime]) -> None:
    rt = e2b_runtime(template="no-such-template")
    with pytest.raises(SandboxUnavailable, match="template"):
        rt.session()


def test_a_template_smaller_than_the_policy_is_refused(
        e2b_runtime: Callable[..., Runtime], double: E2BDouble) -> None:
    """The policy's cpu/memory_mb are what the template must give at least."""
    rt = e2b_runtime(memory_mb=4096)
    with pytest.raises(SandboxUnavailable, match="256 MB"):
        rt.session()
    assert not double.sandboxes


def test_e2b_refuses_a_package_environment(double: E2BDouble) -> None:
    """A package environment lives on the host's disk, which a VM cannot see: refused."""
    from rlmbox.sandboxes.base import SandboxSpec
    from rlmbox.sandboxes.e2b.backend import E2BBackend

    with pytest.raises(SandboxUnavailable, match="template"):
        E2BBackend().create(SandboxSpec(environment=Path("/nonexistent-env")))


def test_the_warm_pool_hands_out_tagged_sandboxes_and_kills_them_at_close(
        e2b_runtime: Callable[..., Runtime], double: E2BDouble) -> None:
    rt = e2b_runtime(pool_size=1)
    assert rt.warm_up(timeout=60)
    pool_members = list(double.sandboxes.values())   # the full pool, nothing else running
    assert len(pool_members) == 1
    assert LABEL_OWNER in pool_members[0].metadata
    with rt.session() as session:
        assert session.sandbox.info.sandbox_id == pool_members[0].sandbox_id
        assert session.exec("print(1)").stdout.strip() == "1"
    rt.close()
    assert not double.sandboxes


def test_session_create_is_audited_with_the_e2b_sandbox(
        e2b_runtime: Callable[..., Runtime]) -> None:
    rt = e2b_runtime()
    with rt.session() as session:
        sandbox_id = session.sandbox.info.sandbox_id
    rt.close()
    assert rt.audit_path is not None
    created = [r for r in iter_records(rt.audit_path.parent) if r["event"] == "session.create"]
    assert created[0]["sandbox"]["backend"] == "e2b"
    assert created[0]["sandbox"]["id"] == sandbox_id
    assert "hardware_virtualization" in created[0]["properties"]


def test_importing_rlmbox_does_not_import_the_e2b_sdk() -> None:
    probe = ("import sys, rlmbox\n"
             "print(any(m.split('.')[0] in ('e2b', 'e2b_code_interpreter') "
             "for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"
