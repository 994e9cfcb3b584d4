"""The policy's ``session: {env, cwd}``: model code sees exactly those variables on top
of the sandbox's minimal environment, never the host's, and starts in that directory,
which must lie in the writable area; reserved names are refused at load time."""

from __future__ import annotations

import json
import os

import pytest

from rlmbox.errors import PolicyError, RlmboxError
from rlmbox.policies.model import policy_from_data

from .harness import Runtimes

HOST_CANARY = "RLMBOX_TEST_HOST_ONLY"


def test_policy_variables_and_cwd_and_none_of_the_hosts(
        runtimes: Runtimes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HOST_CANARY, "host-secret-value")
    monkeypatch.setenv("REGION", "host-region")
    rt = runtimes(session={"env": {"REGION": "eu", "MODE": "batch"}, "cwd": "/tmp/work"})
    with rt.session() as s:
        r = s.exec("import json, os, subprocess\n"
                   "child = subprocess.run(['sh', '-c', 'echo $REGION'], capture_output=True,"
                   " text=True).stdout.strip()\n"
                   "print(json.dumps({'env': dict(os.environ), 'cwd': os.getcwd(),"
                   " 'child': child}))")
    assert r.status == "ok", r.error
    seen = json.loads(r.stdout)
    assert seen["env"]["REGION"] == "eu"
    assert seen["env"]["MODE"] == "batch"
    assert seen["child"] == "eu"   # inherited by what model code starts
    assert seen["cwd"] == "/tmp/work"
    assert HOST_CANARY not in seen["env"]
    assert "host-secret-value" not in r.stdout
    assert set(seen["env"]) <= {"REGION", "MODE", "PATH", "HOME", "LANG", "TMPDIR",
                                "PYTHONDONTWRITEBYTECODE", "HOSTNAME", "PWD", "SHLVL", "_"}


def test_a_cwd_outside_the_writable_area_refuses_the_session(runtimes: Runtimes) -> None:
    """It cannot be created on the read-only root: the session is refused with the
    reason, rather than starting somewhere else."""
    rt = runtimes(session={"cwd": "/usr/rlmbox-cannot-be-here"})
    with pytest.raises(RlmboxError, match="failed to initialise"):
        rt.session()
    assert not os.path.exists("/usr/rlmbox-cannot-be-here")


@pytest.mark.parametrize("name", ["LD_PRELOAD", "LD_LIBRARY_PATH", "PYTHONPATH",
                                  "PYTHONSTARTUP", "pythonhome", "RLMBOX_TOKEN"])
def test_reserved_variables_are_refused_at_load(name: str) -> None:
    with pytest.raises(PolicyError) as refused:
        policy_from_data({"session": {"env": {name: "/tmp/x"}}})
    assert "is reserved" in refused.value.errors[0]


@pytest.mark.parametrize("cwd", ["relative", "/tmp/../etc", "/tmp/./x", "/tmp/a b"])
def test_cwd_must_be_a_plain_absolute_path(cwd: str) -> None:
    with pytest.raises(PolicyError):
        policy_from_data({"session": {"cwd": cwd}})
