"""Work that makes a session's first cell fast, done while the agent has nothing to do.

Before ``ready`` the agent does only what must precede any model code (its descriptors,
Landlock and seccomp, the output pump): every module it imports there is paid by every cold
start, where the host waits for ``ready``. What only speeds up a first cell (the compiler
paged in, the modules ``init`` or an error report may need) runs after ``ready``, one step
at a time, and only once the host has sent nothing for ``GRACE_S``: a pooled sandbox does
all of it while it sits in the pool; a cold one, whose ``init`` and first cell follow at
once, is not held up by a step under way, and what is left is done at first use instead
(each module is also imported where it is used). Steps stop for good at the first cell:
from then on model code shares the interpreter, so the agent runs nothing of its own
between cells. An agent confined at ``init`` (Docker) runs every step before ``ready``
instead, as all agents did before (``main.py`` says why).
"""

from __future__ import annotations

import collections
import contextlib

from rlmbox.sandboxes.agent.warm_compiler import warm_compiler

TYPE_CHECKING = False   # typing costs ~2 ms at every sandbox start: for mypy only
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

#: how long the host must be quiet before a step starts: a cold start's ``init`` follows its
#: ``ready`` within about a millisecond, but a pool's refill, and a caller waiting for it,
#: may hand the sandbox out several ms after ``ready`` on a loaded host (at 5 ms a warm
#: ``init`` was seen to wait on a step under way)
GRACE_S = 0.05
# imported where they are used; here only ahead of that use, in steps of under a ms each
# (traceback's own imports first), so a frame that comes during one waits little
MODULES = ("linecache", "textwrap", "traceback", "rlmbox.sandboxes.process.confine",
           "rlmbox.sandboxes.agent.context_file", "rlmbox.sandboxes.agent.files",
           "rlmbox.sandboxes.agent.gated_context", "rlmbox.sandboxes.agent.restricted_guards",
           "base64", "importlib.util")


def _importer(name: str) -> Callable[[], object]:
    return lambda: __import__(name)


def default_steps() -> list[Callable[[], object]]:
    """The agent's warm-up: the compiler first (every session compiles a cell), then the
    modules of ``init``'s optional layers and of a cell's error report."""
    return [warm_compiler, *(_importer(name) for name in MODULES)]


class IdleWarmup:
    """Runs its steps in order while ``waiting(timeout)`` is false, until :meth:`stop`."""

    def __init__(self, steps: Iterable[Callable[[], object]]) -> None:
        self._steps = collections.deque(steps)

    def run(self, waiting: Callable[[float], bool]) -> None:
        """Runs steps, once nothing came for ``GRACE_S``, until none is left or a frame
        waits; a step that fails (an optional layer this bundle lacks) is skipped: a
        warm-up never stops the agent."""
        if not self._steps or waiting(GRACE_S):
            return
        while self._steps and not waiting(0.0):
            step = self._steps.popleft()
            with contextlib.suppress(Exception):   # the use site imports it again, reports
                step()

    def stop(self) -> None:
        """Drops the steps left: a cell is about to run."""
        self._steps.clear()

    @property
    def left(self) -> int:
        return len(self._steps)
