"""The agent's entry point: take the private fds, confine, say ready, serve frames.

Runs inside the sandbox from the bundle (``agent.py`` at the bundle's root puts the bundle
on ``sys.path`` and calls :func:`main`). Standard library and the frame codec only.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys

from rlmbox.sandboxes import protocol
from rlmbox.sandboxes.agent.fds import connect_path, take_private_fds
from rlmbox.sandboxes.agent.reaper import reap_as_init
from rlmbox.sandboxes.agent.repl import Agent
from rlmbox.sandboxes.agent.warm_compiler import warm_compiler

TYPE_CHECKING = False   # typing costs ~2 ms at every sandbox start: for mypy only
if TYPE_CHECKING:
    from typing import Any


def _preload() -> None:
    """Imports what ``init`` may need before saying ready, so a warm sandbox's init is
    only the policy-specific work (ctypes alone costs milliseconds to import), and pages
    in the compiler the first cell needs (``warm_compiler``)."""
    for name in ("rlmbox.sandboxes.process.confine", "rlmbox.sandboxes.agent.gated_context",
                 "rlmbox.sandboxes.agent.restricted_guards", "json"):
        with contextlib.suppress(ImportError):   # an optional layer this bundle lacks
            __import__(name)
    warm_compiler()


def _startup_confinement(argv: list[str]) -> dict[str, Any] | None:
    """``--confine=<JSON object>`` from the backend: the same keys as ``init``'s config."""
    for arg in argv:
        if arg.startswith("--confine="):
            import json  # noqa: PLC0415

            value = json.loads(arg.removeprefix("--confine="))
            return value if isinstance(value, dict) else None
    return None


def main() -> None:
    if os.getpid() == 1:
        reap_as_init()
    # a child inherits its spawner's signal mask: a host thread that blocked SIGINT (Ray's
    # workers do) would make every cell uninterruptible, so start from an empty mask
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # until a cell runs: nothing to interrupt
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    io, stdout_r, stderr_r = take_private_fds(connect_path(sys.argv[1:]))
    sys.stdout = open(1, "w", encoding="utf-8", errors="backslashreplace",  # noqa: SIM115
                      closefd=False, buffering=1)
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace",  # noqa: SIM115
                      closefd=False, buffering=1)
    _preload()
    agent = Agent(io, stdout_r, stderr_r)
    startup = _startup_confinement(sys.argv[1:])
    if startup is not None:   # the backend knows the confinement: apply it before ready
        agent.confine(startup)
    try:
        agent.serve()
    except protocol.FrameError as exc:
        os.write(2, f"rlmbox agent: protocol error from host: {exc}\n".encode())
        os._exit(3)
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            os._exit(0)
        raise


if __name__ == "__main__":
    main()
