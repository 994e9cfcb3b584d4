"""Odd files for the audit tests: what to plant in a log file's place, and a deadline.

A FIFO opened for reading blocks until a writer comes, and ``/dev/zero`` never ends, so
each call under test runs in a thread with a deadline: a test fails, rather than hangs,
when a refusal is missing.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rlmbox.audit.log import AuditLog

KINDS = ("fifo", "directory", "symlink_to_dev_zero", "symlink_to_fifo", "socket",
         "symlink_to_regular_file")
DEADLINE_S = 2.0


def plant(kind: str, path: Path, elsewhere: Path) -> None:
    """Put an odd file of ``kind`` at ``path``, in place of what was there."""
    if path.is_symlink() or path.is_file():
        copy = path.read_bytes() if path.is_file() else b""
        path.unlink()
    else:
        copy = b""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "symlink_to_dev_zero":
        path.symlink_to("/dev/zero")
    elif kind == "symlink_to_fifo":
        target = elsewhere / f"{path.name}.fifo"
        os.mkfifo(target)
        path.symlink_to(target)
    elif kind == "socket":
        with contextlib.chdir(path.parent), socket.socket(socket.AF_UNIX) as sock:
            sock.bind(path.name)   # relative: a tmp path can pass the 108-byte limit
    elif kind == "symlink_to_regular_file":
        target = elsewhere / f"{path.name}.real"
        target.write_bytes(copy)
        path.symlink_to(target)
    else:
        raise AssertionError(kind)


def unblock_fifos(root: Path) -> None:
    """Open every FIFO under ``root`` both ways once, so a call blocked opening one ends."""
    for entry in root.rglob("*"):
        with contextlib.suppress(OSError):
            if stat.S_ISFIFO(entry.lstat().st_mode):
                os.close(os.open(entry, os.O_RDWR | os.O_NONBLOCK))


def within_deadline(call: Callable[[], Any], root: Path) -> Any:
    """``call()``'s value, or the exception it raised (returned, not raised); the test
    fails if it is still running at the deadline."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:   # handed back to the test, whatever it is
            outcome["value"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(DEADLINE_S)
    if thread.is_alive():
        unblock_fifos(root)
        thread.join(DEADLINE_S)
        value = outcome.get("value")
        if isinstance(value, AuditLog):
            value.close()
        pytest.fail(f"still running after {DEADLINE_S} s: it waited on an odd file")
    return outcome["value"]


