"""Resource exhaustion inside the container: OOM and fork bombs end safely and are named."""

from __future__ import annotations

from typing import Any

import pytest
from docker_helpers import answer

from rlmbox.errors import SandboxCrashed

pytestmark = [pytest.mark.docker, pytest.mark.slow]

FORK_BOMB = """
import os, time
n, err = 0, None
for _ in range(2000):
    try:
        pid = os.fork()
    except OSError as e:
        err = e.errno
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    n += 1
answer = [n, err]
"""


def test_oom_is_reported_as_out_of_memory(make_sandbox: Any) -> None:
    sandbox = make_sandbox(memory_bytes=128 * 1024 * 1024)
    sandbox.send({"t": "exec", "id": "oom",
                  "code": "x = []\nwhile True: x.append(bytearray(8 << 20))"})
    with pytest.raises(SandboxCrashed, match="out of memory"):
        sandbox.recv(120)
    assert sandbox.death_reason() == "out of memory"


def test_fork_bomb_is_contained(make_sandbox: Any) -> None:
    """runc: fork fails with EAGAIN at the pids limit and the agent lives on.
    runsc: the pids cgroup may end the whole gVisor sandbox; that is reported as killed."""
    sandbox = make_sandbox(pids=32)
    sandbox.send({"t": "exec", "id": "bomb", "code": FORK_BOMB})
    if sandbox.info.runtime == "runc":
        frame = sandbox.recv(120)
        assert frame is not None
        assert frame["status"] == "ok"
        forked, err = frame["answer"]
        assert err == 11  # EAGAIN
        assert forked < 32
        assert answer(sandbox, "answer = 'alive'") == "alive"
        return
    try:
        frame = sandbox.recv(120)
    except SandboxCrashed as exc:
        message = str(exc)
        reason = sandbox.death_reason()
        assert "killed" in message
        assert "pids limit" in message
        assert reason is not None
        assert reason.startswith("killed")
    else:
        assert frame is not None
        forked, err = frame["answer"]
        assert err == 11
        assert forked < 32 + 128


def test_open_files_ulimit_applies(make_sandbox: Any) -> None:
    sandbox = make_sandbox(open_files=64)
    limits = answer(sandbox, "import resource\n"
                             "answer = resource.getrlimit(resource.RLIMIT_NOFILE)")
    assert limits == [64, 64]


def test_file_size_ulimit_applies(make_sandbox: Any) -> None:
    sandbox = make_sandbox(file_size_bytes=1024 * 1024)
    limit = answer(sandbox, "import resource\n"
                            "answer = resource.getrlimit(resource.RLIMIT_FSIZE)")
    assert limit == [1024 * 1024, 1024 * 1024]


def test_memory_and_cpu_limits_reach_the_engine(make_sandbox: Any, engine: Any) -> None:
    sandbox = make_sandbox(memory_bytes=200 * 1024 * 1024, cpu_cores=0.5, pids=40)
    host = engine.api.inspect_container(sandbox.container_id)["HostConfig"]
    assert host["Memory"] == 200 * 1024 * 1024
    assert host["MemorySwap"] == 200 * 1024 * 1024  # no swap on top
    assert host["NanoCpus"] == 500_000_000
    extra = 128 if sandbox.info.runtime == "runsc" else 0
    assert host["PidsLimit"] == 40 + extra
    assert host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert not host["Privileged"]
