"""The physical floors each rlmbox figure is compared with, measured in the same run.

Machines differ (and a shared machine differs from minute to minute), so issue 16 states
each target as a ratio to a floor measured beside it: what the kernel, the interpreter,
the disk, bubblewrap and the container engine cost with rlmbox taken away.

* ``pipe round trip``: one byte to a child process through a pipe and back (the child is
  the same Python, in a read/write loop), the transport floor of every cell and call;
* ``x = 1 exec``: CPython compiling and running ``x = 1`` in this process;
* ``fsync``: appending a 200-byte line to a file in the audit log's directory and fsyncing
  it, the durability floor of a cell under ``durability="cell"``;
* ``policy decision``: the policy engine deciding one ``llm_query`` under the benchmark's
  policy (part of the issue's ``llm_query`` floor: the decision cannot be skipped);
* ``bwrap true`` and ``bwrap python -c pass``: bubblewrap with the process backend's own
  namespaces and mounts (``jail.bwrap_argv``) and no agent, cgroup or seccomp;
* ``docker run <runtime>``: ``docker run --rm --network=none --runtime=<runtime> <image>
  python3 -c pass`` with the sandbox image, through the CLI (its own start-up included).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

from figures import Figure, timed

from rlmbox.policies.engine import CallRequest, PolicyEngine
from rlmbox.policies.model import Policy
from rlmbox.sandboxes.process.backend import sandbox_python
from rlmbox.sandboxes.process.jail import bwrap_argv

PIPE = "pipe round trip"
EXEC = "x = 1 exec"
FSYNC = "fsync"
DECISION = "policy decision"
BWRAP_TRUE = "bwrap true"
BWRAP_PYTHON = "bwrap python -c pass"

ECHO_CHILD = ("import os\nwhile True:\n    b = os.read(0, 1)\n    if not b:\n        break\n"
              "    os.write(1, b)\n")


def docker_run(runtime: str) -> str:
    return f"docker run {runtime}"


def pipe_round_trip(n: int) -> list[float]:
    child = subprocess.Popen([sys.executable, "-I", "-c", ECHO_CHILD],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    if child.stdin is None or child.stdout is None:
        raise RuntimeError("the echo child has no pipes")
    w, r = child.stdin.fileno(), child.stdout.fileno()

    def trip() -> None:
        os.write(w, b"x")
        os.read(r, 1)

    try:
        timed(trip, 50)   # warm
        return timed(trip, n)
    finally:
        child.stdin.close()
        child.wait(10)
        child.stdout.close()


def exec_trivial(n: int) -> list[float]:
    namespace: dict[str, object] = {}
    return timed(lambda: exec(compile("x = 1", "<cell>", "exec"), namespace), n)  # noqa: S102


def fsync_line(n: int, directory: Path) -> list[float]:
    line = b"x" * 199 + b"\n"
    with tempfile.NamedTemporaryFile(dir=directory, prefix="floor-fsync-") as handle:
        fd = handle.fileno()

        def append() -> None:
            os.write(fd, line)
            os.fsync(fd)

        return timed(append, n)


def policy_decision(n: int, policy: Policy) -> list[float]:
    engine = PolicyEngine(policy)
    request = CallRequest("llm_query", {"prompt": "ping", "model": None})
    timed(lambda: engine.decide(request), 100)
    return timed(lambda: engine.decide(request), n)


def bare_bwrap(tail: list[str]) -> list[str]:
    """The process backend's bubblewrap command line, no agent, ending in ``tail``."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise RuntimeError("bubblewrap is not installed")
    python = sandbox_python(os.geteuid() == 0)
    head = bwrap_argv(bwrap, python, [], tmpfs_bytes=64 << 20, shm_bytes=64 << 20,
                      info_fd=None)
    return [*head, *[str(python) if part == "PYTHON" else part for part in tail]]


def run_command(argv: list[str], n: int) -> list[float]:
    def once() -> None:
        subprocess.run(argv, check=True, capture_output=True, timeout=60)

    once()   # warm the page cache
    return timed(once, n)


def measure(names: list[str], *, table: str, reps: int, starts: int, audit_dir: Path,
            policy: Policy, image: str | None = None) -> dict[str, Figure]:
    """The named floors; one that cannot be measured here is a figure without samples
    whose note says why (a missing floor prints no ratio, it does not stop the run)."""
    how: dict[str, tuple[str, Callable[[], list[float]]]] = {
        PIPE: ("1 byte to a child and back, os.write/os.read",
               lambda: pipe_round_trip(reps)),
        EXEC: ("exec(compile('x = 1')) in this process", lambda: exec_trivial(reps)),
        FSYNC: ("200-byte append + fsync in the audit directory",
                lambda: fsync_line(max(20, reps // 10), audit_dir)),
        DECISION: ("PolicyEngine.decide(llm_query), this policy",
                   lambda: policy_decision(reps, policy)),
        BWRAP_TRUE: ("the process backend's bwrap argv, `true`",
                     lambda: run_command(bare_bwrap(["true"]), starts)),
        BWRAP_PYTHON: ("the process backend's bwrap argv, `python -I -c pass`",
                       lambda: run_command(bare_bwrap(["PYTHON", "-I", "-c", "pass"]), starts)),
    }
    for runtime in ("runc", "runsc"):
        how[docker_run(runtime)] = (
            f"docker run --rm --network=none --runtime={runtime} <sandbox image> "
            "python3 -c pass",
            partial(run_command, ["docker", "run", "--rm", "--network=none",
                                  f"--runtime={runtime}", image or "<no image>", "python3",
                                  "-c", "pass"], starts))
    floors = {}
    for name in names:
        what, run = how[name]
        try:
            samples: tuple[float, ...] = tuple(run())
            note = what
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            samples, note = (), f"not measured: {type(exc).__name__}: {exc}"[:160]
        floors[name] = Figure(table, "floor", name, samples, note=note)
    return floors
