"""The agent's entry point: take the private fds, confine, say ready, serve frames.

Runs inside the sandbox from the bundle (``agent.py`` at the bundle's root puts the bundle
on ``sys.path`` and calls :func:`main`). Standard library and the frame codec only.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # signal's C core: ``signal`` builds enums
import contextlib
import errno
import os
import sys

from rlmbox.sandboxes import protocol
from rlmbox.sandboxes.agent.fds import connect_path, take_private_fds
from rlmbox.sandboxes.agent.reaper import reap_as_init
from rlmbox.sandboxes.agent.repl import Agent

TYPE_CHECKING = False   # typing costs ~2 ms at every sandbox start: for mypy only
if TYPE_CHECKING:
    from typing import Any


def _startup_confinement(argv: list[str]) -> dict[str, Any] | None:
    """``--confine=<JSON object>`` from the backend: the same keys as ``init``'s config."""
    for arg in argv:
        if arg.startswith("--confine="):
            import json  # noqa: PLC0415

            value = json.loads(arg.removeprefix("--confine="))
            return value if isinstance(value, dict) else None
    return None


def _warm_before_ready(agent: Agent) -> None:
    """An agent confined at ``init`` (Docker) warms up before ``ready``, as every agent did
    before ``idle_warmup.py``: the host's own work after a container's ``ready`` outlasts
    the warm-up's grace, so a step under way would hold up a pooled sandbox's ``init``;
    and ``init`` needs the confinement module (ctypes) anyway."""
    with contextlib.suppress(ImportError):   # a bundle without the layer: init reports it
        import rlmbox.sandboxes.process.confine  # noqa: F401, PLC0415
    agent.warmup.run(lambda _timeout: False)


def main() -> None:
    if os.getpid() == 1:
        reap_as_init()
    # a child inherits its spawner's signal mask: a host thread that blocked SIGINT (Ray's
    # workers do) would make every cell uninterruptible, so start from an empty mask
    _signal.pthread_sigmask(_signal.SIG_SETMASK, ())
    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)   # until a cell runs: nothing to interrupt
    _signal.signal(_signal.SIGPIPE, _signal.SIG_DFL)
    io, stdout_r, stderr_r = take_private_fds(connect_path(sys.argv[1:]))
    sys.stdout = open(1, "w", encoding="utf-8", errors="backslashreplace",  # noqa: SIM115
                      closefd=False, buffering=1)
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace",  # noqa: SIM115
                      closefd=False, buffering=1)
    # what only speeds up a first cell waits until after ready (idle_warmup.py)
    agent = Agent(io, stdout_r, stderr_r)
    startup = _startup_confinement(sys.argv[1:])
    if startup is not None:   # the backend knows the confinement: apply it before ready
        agent.confine(startup)
    else:   # confined at init (Docker)
        _warm_before_ready(agent)
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
