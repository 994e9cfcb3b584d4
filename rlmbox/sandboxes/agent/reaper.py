"""The agent as pid 1 in a container without an init: reap orphans, forward signals."""

from __future__ import annotations

import os
import signal


def reap_as_init() -> None:
    """As pid 1 (a container without an init), fork: the child serves, this process reaps
    orphans (zombies count against the pids limit) and forwards interrupts. Reaping only
    our own children never steals a wait status from model code's ``subprocess``."""
    child = os.fork()
    if child == 0:
        return
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda sig, _frame: os.kill(child, sig))
    for fd in (0, 1):
        os.close(fd)   # only the serving child speaks the protocol
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(0)
        except InterruptedError:
            continue
        if pid == child:
            os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
