"""Cell slots for ``rlm_query`` children: a tenant's cell cap binds them too.

A child's cell runs while its parent's cell waits in ``rlm_query``, holding a slot. The
child takes a free slot of the tenant when there is one; otherwise it waits for its
parent's *lane*: the parent's slot, lent to its children one at a time (the parent runs
no code of its own meanwhile). A lane is a lock per parent, and a child's own lane serves
its children, so the waits form a tree and cannot deadlock; each wait is bounded by the
cells ahead of it, each bounded by the policy's cell wall time. Under a cap of one, the
four children of ``rlm_query_batched`` run their cells one after another.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rlmbox.daemon.admission import Slot


class ChildCells:
    """The lanes of one tenant's sessions, and the slots their children take."""

    def __init__(self, try_take: Callable[[], Slot | None]) -> None:
        self._try_take = try_take
        self._lanes: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def slot(self, parent: str) -> Iterator[None]:
        """Held while a child of ``parent`` starts its sandbox or runs a cell."""
        taken = self._try_take()
        if taken is not None:
            try:
                yield
            finally:
                taken.release()
            return
        with self._lane(parent):
            yield

    def forget(self, session_id: str) -> None:
        """The session ended: its lane goes (its children have ended before it)."""
        with self._lock:
            self._lanes.pop(session_id, None)

    def _lane(self, parent: str) -> threading.Lock:
        with self._lock:
            return self._lanes.setdefault(parent, threading.Lock())
