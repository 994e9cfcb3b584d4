"""Every isolation property the Docker backend declares, proven from inside the container."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
from docker_helpers import answer, run

from rlmbox.sandboxes.base import IsolationProperty
from rlmbox.sandboxes.docker.backend import DockerSandbox

pytestmark = pytest.mark.docker

STATUS = "answer = {k: v.strip() for k, v in (l.split(':', 1) for l in open('/proc/self/status'))}"


def test_properties_are_declared(sandbox: DockerSandbox) -> None:
    expected = {IsolationProperty.NETWORK_NONE, IsolationProperty.READ_ONLY_ROOT,
                IsolationProperty.CAPS_DROPPED, IsolationProperty.NO_NEW_PRIVILEGES,
                IsolationProperty.NON_ROOT,
                IsolationProperty.PIDS_LIMIT, IsolationProperty.MEMORY_LIMIT,
                IsolationProperty.DISK_LIMIT}
    assert expected <= sandbox.properties
    runsc = sandbox.info.runtime == "runsc"
    assert (IsolationProperty.USER_SPACE_KERNEL in sandbox.properties) is runsc


def test_no_capabilities(sandbox: DockerSandbox) -> None:
    """CapEff, CapPrm, the bounding and ambient sets are all empty (gVisor has no CapAmb)."""
    status = answer(sandbox, STATUS)
    for field in ("CapEff", "CapPrm", "CapBnd", "CapAmb"):
        assert int(status.get(field, "0"), 16) == 0, field
    assert "CapEff" in status


def test_no_new_privileges(sandbox: DockerSandbox) -> None:
    """prctl(PR_GET_NO_NEW_PRIVS) is 1 (gVisor has no NoNewPrivs line in /proc)."""
    assert answer(sandbox, "import ctypes\nanswer = ctypes.CDLL(None).prctl(39, 0, 0, 0, 0)") == 1
    status = answer(sandbox, STATUS)
    if sandbox.info.runtime == "runc":
        assert status["NoNewPrivs"] == "1"


def test_seccomp_filter_installed(sandbox: DockerSandbox) -> None:
    """runc: Seccomp mode 2 (the engine's default profile). runsc: no guest filter, and the
    backend does not claim one (the sentry's own host filter is gVisor's business)."""
    seccomp = answer(sandbox, STATUS)["Seccomp"]
    if sandbox.info.runtime == "runc":
        assert seccomp == "2"
        assert IsolationProperty.SECCOMP in sandbox.properties
    else:
        assert IsolationProperty.SECCOMP not in sandbox.properties


def test_threads_start(sandbox: DockerSandbox) -> None:
    """The agent's output pump needs threads (gVisor with OCI seccomp refused them)."""
    code = ("import threading\nout = []\n"
            "t = threading.Thread(target=out.append, args=(1,))\n"
            "t.start(); t.join()\nanswer = out")
    assert answer(sandbox, code) == [1]


def test_seccomp_blocks_a_denied_syscall(sandbox: DockerSandbox) -> None:
    """runc: the default profile denies admin calls: unshare(CLONE_NEWUSER) fails. runsc
    has no guest filter here; what stands between the code and the host kernel is gVisor,
    whose Sentry answers syscalls itself (it reports its own kernel release)."""
    if sandbox.info.runtime == "runsc":
        host_release = os.uname().release
        assert answer(sandbox, "import os\nanswer = os.uname().release") != host_release
        return
    code = ("import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            "r = libc.unshare(0x10000000)\nanswer = [r, ctypes.get_errno()]")
    result, errno = answer(sandbox, code)
    assert result == -1
    assert errno in (1, 22, 38)  # EPERM (seccomp/caps), EINVAL, ENOSYS (gVisor)


def test_runs_as_the_unprivileged_sandbox_user(sandbox: DockerSandbox) -> None:
    ids = answer(sandbox, "import os\nanswer = [os.getuid(), os.geteuid(), os.getgid(), "
                          "os.getegid(), os.getgroups()]")
    assert ids[:4] == [10001, 10001, 10001, 10001]
    assert 0 not in ids[4]


def test_no_engine_socket_inside(sandbox: DockerSandbox) -> None:
    found = answer(sandbox, (
        "import os\nanswer = [p for p in ('/var/run/docker.sock', '/run/docker.sock', "
        "'/run/containerd/containerd.sock', '/var/run/docker') if os.path.exists(p)]"))
    assert found == []


@pytest.mark.parametrize("path", ["/etc/evil", "/usr/bin/evil", "/evil", "/rlmbox/agent/evil",
                                  "/rlmbox/context/evil", "/etc/hosts"])
def test_writes_outside_tmpfs_are_refused(sandbox: DockerSandbox, path: str) -> None:
    frame = run(sandbox, f"open({path!r}, 'a').write('x')")
    assert frame["status"] == "error"
    assert "Read-only file system" in frame["error"] or "Permission denied" in frame["error"]


def test_agent_bundle_is_mounted_read_only(sandbox: DockerSandbox) -> None:
    frame = run(sandbox, "open('/rlmbox/agent/agent.py', 'a').write('# pwned')")
    assert frame["status"] == "error"


@pytest.mark.parametrize("where", ["/work", "/tmp"])
def test_disk_fill_stops_at_the_tmpfs_cap(make_sandbox: Any, where: str) -> None:
    """Writing 1 MiB blocks until ENOSPC stops at the 4 MiB cap, not on the host disk."""
    sandbox = make_sandbox(disk_bytes=4 * 1024 * 1024)
    code = (f"import errno\nn = 0\nf = open('{where}/fill', 'wb', buffering=0)\n"
            "try:\n    while n < 64:\n        f.write(b'x' * (1 << 20)); n += 1\n"
            "except OSError as e:\n    err = e.errno\nelse:\n    err = None\n"
            "f.close()\nimport os\nanswer = [os.path.getsize(f.name), err]")
    size, err = answer(sandbox, code)
    assert err == 28  # ENOSPC
    assert size <= 4 * 1024 * 1024


def test_clock_change_is_refused(sandbox: DockerSandbox) -> None:
    frame = run(sandbox, "import time\ntime.clock_settime(time.CLOCK_REALTIME, 0.0)")
    assert frame["status"] == "error"
    assert "PermissionError" in frame["error"] or "Operation not permitted" in frame["error"]


def test_only_loopback_interface(sandbox: DockerSandbox) -> None:
    names = answer(sandbox, "import socket\nanswer = [n for _, n in socket.if_nameindex()]")
    assert names in (["lo"], [])


def test_host_loopback_listener_is_unreachable(sandbox: DockerSandbox) -> None:
    """A TCP listener on the host's 127.0.0.1 gets no connection from inside."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    accepted: list[Any] = []

    def accept() -> None:
        with contextlib.suppress(OSError):  # the timeout: nobody connected
            accepted.append(server.accept())

    thread = threading.Thread(target=accept)
    thread.start()
    try:
        code = ("import socket\ns = socket.socket()\ns.settimeout(2)\n"
                f"try:\n    s.connect(('127.0.0.1', {port}))\n    answer = 'connected'\n"
                "except OSError as e:\n    answer = repr(e)")
        outcome = answer(sandbox, code)
    finally:
        thread.join()
        server.close()
    assert outcome != "connected"
    assert accepted == []


def test_host_processes_are_invisible(sandbox: DockerSandbox) -> None:
    pids = answer(sandbox, "import os\nanswer = sorted(int(p) for p in os.listdir('/proc') "
                           "if p.isdigit())")
    assert len(pids) < 10
    assert answer(sandbox, "import os\nanswer = os.getpid()") == 1


def test_only_expected_mounts(sandbox: DockerSandbox) -> None:
    """Mount points are the engine's pseudo-filesystems, the tmpfs, and the two rlmbox binds.

    Docker's generated /etc/hosts, /etc/hostname and /etc/resolv.conf are bind mounts too;
    with a read-only root they are read-only (proven by the write test above).
    """
    points = answer(sandbox, "answer = [l.split()[4] for l in open('/proc/self/mountinfo')]")
    allowed_prefixes = ("/proc", "/sys", "/dev")
    allowed = {"/", "/tmp", "/work", "/rlmbox/agent", "/rlmbox/context", "/etc/hosts",
               "/etc/hostname", "/etc/resolv.conf"}
    unexpected = [p for p in points if p not in allowed and not p.startswith(allowed_prefixes)]
    assert unexpected == []
    assert {"/rlmbox/agent", "/rlmbox/context", "/work", "/tmp"} <= set(points)


def test_staged_context_is_readable_and_read_only(sandbox: DockerSandbox,
                                                  tmp_path: Path) -> None:
    source = tmp_path / "doc.txt"
    source.write_text("hello context")
    source.chmod(0o600)  # private on the host: staged by copy, readable inside
    inside = sandbox.stage(source, "doc.txt")
    assert inside == "/rlmbox/context/doc.txt"
    assert answer(sandbox, f"answer = open({inside!r}).read()") == "hello context"
    frame = run(sandbox, f"open({inside!r}, 'w').write('x')")
    assert frame["status"] == "error"
    assert source.read_text() == "hello context"


def test_engine_keeps_no_container_log(sandbox: DockerSandbox) -> None:
    """Frames and output never land in the engine's container log (no log driver)."""
    import docker

    answer(sandbox, "print('a line the engine must not keep')\nanswer = 1")
    client = docker.from_env(timeout=10)
    try:
        container = client.containers.get(sandbox.container_id)
        assert container.attrs["HostConfig"]["LogConfig"]["Type"] == "none"
        assert container.attrs["LogPath"] in ("", None)
    finally:
        client.close()
