"""TEST DOUBLE, not E2B: one fake "microVM", a real rlmbox process jail on this host.

Built from rlmbox's own jail pieces (``bwrap_argv``, ``jail_entry_argv``, a cgroup), so the
real agent runs inside walls at least as strong as the ``process`` backend's: own pid,
net, ipc, uts and user namespaces, a cgroup for memory/pids/CPU, and the sandbox uid. Its
``/home/user`` is a host directory the double's envd writes uploads into. Every process the
double's envd starts runs under :mod:`guest` (the VM's init), so they share one pid
namespace and one filesystem, as in a VM.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import struct
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlmbox.sandboxes.base import ResourceLimits
from rlmbox.sandboxes.process import spawner
from rlmbox.sandboxes.process.backend import sandbox_python
from rlmbox.sandboxes.process.cgroups import Cgroup, CgroupLimits, cgroup_version
from rlmbox.sandboxes.process.jail import bwrap_argv, jail_entry_argv
from rlmbox.sandboxes.process.uids import lease_uid

HOME = "/home/user"
_GUEST_DIR_INSIDE = "/opt/e2b-double"


@dataclass
class GuestProcess:
    """One process the double's envd started in a VM, as the envd API sees it."""

    number: int
    pid: int = 0
    argv: list[str] = field(default_factory=list)
    exit_code: int | None = None
    # every event since start, so a Connect to a running process replays nothing twice:
    # a listener reads from its own index
    events: list[dict[str, Any]] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)
    stdin_written: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))


class MicroVM:
    """A jail running the guest init; processes in it are started and fed by the host."""

    def __init__(self, sandbox_id: str, root: Path, limits: ResourceLimits) -> None:
        self.sandbox_id = sandbox_id
        # a host uid of the VM's own when root (rlmbox's lease), "nobody" inside
        self._uid = lease_uid() if os.geteuid() == 0 else None
        self.home = root / "home"
        self.home.mkdir(parents=True)
        self.own(self.home)
        self._root = root
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._next = 0
        self.processes: dict[int, GuestProcess] = {}   # by pid inside the VM
        self._by_number: dict[int, GuestProcess] = {}
        self._started: dict[int, threading.Event] = {}
        self._start_errors: dict[int, str] = {}
        self.alive = True
        version = cgroup_version() if os.geteuid() == 0 else 0
        self._cgroup = (Cgroup(f"e2b-double-{sandbox_id}", CgroupLimits(
            limits.memory_bytes, limits.pids, limits.cpu_cores), version) if version else None)
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise RuntimeError("the E2B test double needs bubblewrap")
        python = sandbox_python(drop_uid=os.geteuid() == 0)
        guest_dir = root / "guest"   # under the VM's root: the sandbox uid can reach it
        guest_dir.mkdir(mode=0o755)
        shutil.copyfile(Path(__file__).parent / "guest.py", guest_dir / "guest.py")
        os.chmod(guest_dir / "guest.py", 0o644)
        argv = bwrap_argv(bwrap, python, [(guest_dir, _GUEST_DIR_INSIDE)],
                          tmpfs_bytes=limits.disk_bytes, shm_bytes=limits.shm_bytes,
                          info_fd=None, as_nobody=self._uid is not None)
        argv = [*argv[:-1], "--bind", str(self.home), HOME, "--chdir", HOME,
                "--setenv", "HOME", HOME, "--"]
        argv += [str(python), "-I", "-B", f"{_GUEST_DIR_INSIDE}/guest.py"]

        entry = jail_entry_argv(limits, self._cgroup, bwrap=True,
                                uid=None if self._uid is None else self._uid.uid)
        # started from rlmbox's spawner thread: bubblewrap's --die-with-parent fires when the
        # forking *thread* ends, and the HTTP handler thread that asked ends soon
        self._proc = spawner.spawn(lambda: subprocess.Popen(
            [*entry, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, start_new_session=True))
        self._reader = threading.Thread(target=self._read_events, daemon=True,
                                        name=f"double-vm-{sandbox_id}")
        self._reader.start()

    # --- the guest link ------------------------------------------------------------------

    def _send(self, command: dict[str, Any]) -> None:
        data = json.dumps(command).encode()
        stdin = self._proc.stdin
        if stdin is None:
            return
        with self._write_lock, contextlib.suppress(OSError, ValueError):
            stdin.write(struct.pack(">I", len(data)) + data)
            stdin.flush()

    def _read_events(self) -> None:
        stdout = self._proc.stdout
        while stdout is not None:
            header = stdout.read(4)
            if len(header) < 4:
                break
            event = json.loads(stdout.read(struct.unpack(">I", header)[0]))
            self._on_event(event)
        self._vm_ended()

    def _on_event(self, event: dict[str, Any]) -> None:
        number = event["id"]
        with self._lock:
            process = self._by_number.get(number)
        if process is None:
            return
        kind = event["ev"]
        if kind == "start":
            process.pid = event["pid"]
            with self._lock:
                self.processes[process.pid] = process
            self._started[number].set()
            return
        if kind == "start_failed":
            self._start_errors[number] = event["error"]
            self._started[number].set()
            return
        if kind == "stdin_written":
            process.stdin_written.release()
            return
        if kind == "end":
            process.exit_code = event["code"]
            process.stdin_written.release()   # a writer waiting on a dead process returns
        with process.changed:
            process.events.append(event)
            process.changed.notify_all()

    def _vm_ended(self) -> None:
        """The VM is gone: its processes' streams are cut (no end event: envd died with
        the VM), listeners wake."""
        self.alive = False
        with self._lock:
            processes = list(self._by_number.values())
        for event in self._started.values():
            event.set()
        for process in processes:
            with process.changed:
                if process.exit_code is None:
                    process.exit_code = -9
                    process.events.append({"ev": "vm_gone"})
                process.changed.notify_all()
            process.stdin_written.release()   # a SendInput waiting on it fails now

    # --- what envd asks of the VM ----------------------------------------------------------

    def start(self, argv: list[str], env: dict[str, str], cwd: str | None,
              stdin: bool) -> GuestProcess:
        """Starts a process in the VM; raises ``OSError`` when it cannot be started."""
        with self._lock:
            self._next += 1
            process = GuestProcess(self._next, argv=argv)
            self._by_number[process.number] = process
            self._started[process.number] = threading.Event()
        full_env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": HOME, "LANG": "C.UTF-8",
                    **env}
        self._send({"op": "start", "id": process.number, "argv": argv, "env": full_env,
                    "cwd": cwd or HOME, "stdin": stdin})
        if not self._started[process.number].wait(30) or not process.pid:
            raise OSError(self._start_errors.get(process.number, "the VM is gone"))
        return process

    def send_stdin(self, process: GuestProcess, data: bytes, timeout: float) -> bool:
        """Writes to the process's stdin; True once it is in the pipe, False when the
        process did not read it within ``timeout`` seconds (or ended)."""
        self._send({"op": "stdin", "id": process.number,
                    "data": base64.b64encode(data).decode()})
        return process.stdin_written.acquire(timeout=timeout) and process.exit_code is None

    def close_stdin(self, process: GuestProcess) -> None:
        self._send({"op": "close_stdin", "id": process.number})

    def signal(self, process: GuestProcess, signum: int) -> None:
        self._send({"op": "signal", "id": process.number, "sig": signum})

    def own(self, path: Path) -> None:
        """Files of the VM's disk belong to the VM's user (its leased uid on this host)."""
        if self._uid is not None:
            os.chown(path, self._uid.uid, self._uid.uid)

    def host_path(self, inside: str) -> Path | None:
        """The host file behind a path inside the VM (only ``/home/user`` is reachable)."""
        if inside != HOME and not inside.startswith(HOME + "/"):
            return None
        relative = Path(inside[len(HOME):].lstrip("/"))
        if ".." in relative.parts:
            return None
        return self.home / relative

    def kill(self) -> None:
        """Ends the VM: every process in it, its cgroup and its disk."""
        self.alive = False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=10)
        problems = self._cgroup.remove() if self._cgroup is not None else []
        for stream in (self._proc.stdin, self._proc.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()
        self._reader.join(timeout=5)
        shutil.rmtree(self._root, ignore_errors=True)
        if self._uid is not None and not problems:   # a process may still run as it
            self._uid.release()
