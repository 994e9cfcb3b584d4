"""``rlmbox serve`` as a real subprocess, for the tests that kill or signal it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rlmbox.daemon.client import Client
from rlmbox.errors import DaemonError

REPO = Path(__file__).resolve().parents[2]
DEADLINE_S = 120.0


def rlmbox_cli(*args: str, timeout: float = DEADLINE_S) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "rlmbox.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


class DaemonProcess:
    """Starts ``rlmbox serve`` and waits until it answers on its socket."""

    def __init__(self, state: Path, socket: Path, policy: Path, log: Path,
                 extra_args: Sequence[str] = ()) -> None:
        self.socket = socket
        self.log = log
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "rlmbox.cli.main", "serve", "--socket", str(socket),
                 "--state", str(state), "--policy", f"test={policy}", *extra_args],
                env=env, stdout=out, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the daemon exited: {self.log.read_text()}")
            if self._accepts():
                with Client(socket=self.socket, token="x") as client:  # noqa: S106 - health needs none
                    try:
                        client.health()
                    except DaemonError:
                        pass
                    else:
                        return
            time.sleep(0.1)
        self.proc.kill()
        raise AssertionError(f"the daemon did not start in time: {self.log.read_text()}")

    def _accepts(self) -> bool:
        # probe with our own socket first: httpcore leaks its socket when a Unix-socket
        # connect is refused (a stale socket file left by a killed daemon)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(self.socket))
            except OSError:
                return False
        return True

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(DEADLINE_S)

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(DEADLINE_S)

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(DEADLINE_S)
