"""A node actor's sandbox reaper: a small process of its own that kills the actor's Docker
containers (and E2B sandboxes) once the actor is dead, however it died.

A container is not a child of the process that made it: when a node actor dies (its
raylet killed, ``ray.kill``, SIGKILL) nothing in the kernel ends its containers, and
whatever runs inside one could keep it alive. So the actor starts this reaper at once,
reading a pipe whose write end only the actor holds (close-on-exec, so no child of the
actor holds it). The reaper is nobody's child and in a session of its own: a Ray worker
kills its child processes as it exits, and Ray may kill a worker's process group. The
kernel closes the write end when the actor ends; the reaper reads EOF and has the engine
kill and remove every container labelled with the actor's owner identity
(``sandboxes/owner.py``), kills the E2B sandboxes tagged with it (with the key the actor's
environment holds), then exits. A clean shutdown writes a byte first: the runtime closed
its sandboxes already, so the reaper exits without asking anyone.

It runs as a script, by path, so that it starts in a bare interpreter (importing rlmbox
costs half a second of CPU); it imports rlmbox only once it has work.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

#: what the actor writes on a clean shutdown: its sandboxes are closed already
CLOSED = b"c"
#: how long starting the reaper may take (its first process forks it and exits at once)
START_WAIT_S = 10.0
#: a container whose create was in flight when the actor died lands a moment later:
#: the reaper looks again after this long
SECOND_LOOK_S = 1.0


class SandboxReaper:
    """The actor's side: the running reaper and the pipe's write end."""

    def __init__(self, owner_id: str) -> None:
        read_end, self._write_end = os.pipe()   # both close-on-exec (PEP 446)
        package_root = str(Path(__file__).resolve().parents[2])
        path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
        try:
            # -P: the script's folder (rlmbox/cluster) must not shadow top-level packages
            first = subprocess.Popen(
                [sys.executable, "-P", __file__, owner_id], stdin=read_end,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True, env={**os.environ, "PYTHONPATH": path})
            status = first.wait(START_WAIT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            os.close(self._write_end)
            raise _not_started(str(exc)) from exc
        finally:
            os.close(read_end)
        if status != 0:   # no reaper: no sandbox may be made (fail closed)
            os.close(self._write_end)
            raise _not_started(f"its first process exited with status {status}")

    def release(self) -> None:
        """A clean shutdown: tells the reaper its sandboxes are closed (it exits at once)."""
        try:
            os.write(self._write_end, CLOSED)
        finally:
            os.close(self._write_end)


def _not_started(why: str) -> Exception:
    from rlmbox.errors import RlmboxError  # noqa: PLC0415 - the script side imports no rlmbox

    return RlmboxError(f"the node actor's sandbox reaper did not start: {why}")


def reap(owner_id: str) -> None:
    """Kills every sandbox of ``owner_id``: its Docker containers (and context volumes),
    and, when this host holds an E2B key, its E2B sandboxes (by their owner tag); looks
    again a moment later for one whose create was in flight. A backend that cannot be
    reached (or whose SDK is missing) has nothing to reap from here."""
    import time  # noqa: PLC0415 - imported once there is work (see the module docstring)

    for look in range(2):
        if look:
            time.sleep(SECOND_LOOK_S)
        steps = [_reap_containers] + ([_reap_e2b_sandboxes] if os.environ.get("E2B_API_KEY")
                                      else [])
        for step in steps:
            try:
                step(owner_id)
            except Exception as exc:   # one backend's failure never spares the other's
                print(f"rlmbox reaper: {type(exc).__name__}: {exc}", file=sys.stderr)


def _reap_containers(owner_id: str) -> None:
    from rlmbox.errors import SandboxError  # noqa: PLC0415
    from rlmbox.sandboxes.docker.backend import default_stage_root  # noqa: PLC0415
    from rlmbox.sandboxes.docker.engine import connect  # noqa: PLC0415
    from rlmbox.sandboxes.docker.owner import remove_owned  # noqa: PLC0415

    try:
        client = connect(timeout=30)
    except SandboxError:
        return
    try:
        remove_owned(client, owner_id, default_stage_root())
    finally:
        client.close()


def _reap_e2b_sandboxes(owner_id: str) -> None:
    from rlmbox.errors import SandboxError  # noqa: PLC0415
    from rlmbox.sandboxes.e2b.backend import load_sdk  # noqa: PLC0415
    from rlmbox.sandboxes.e2b.config import E2BConnection  # noqa: PLC0415
    from rlmbox.sandboxes.e2b.orphans import kill_owned  # noqa: PLC0415

    try:
        sdk = load_sdk()
    except SandboxError:
        return
    kill_owned(sdk, E2BConnection.from_env().sdk_params(), owner_id)


def main() -> int:
    """Leaves the actor's family, waits for the actor to end (EOF on stdin), then reaps
    unless it shut down cleanly."""
    (owner_id,) = sys.argv[1:]
    if os.fork() != 0:
        os._exit(0)   # the actor waits for this first process; the reaper goes on orphaned
    if sys.stdin.buffer.read(len(CLOSED)) != CLOSED:
        reap(owner_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
