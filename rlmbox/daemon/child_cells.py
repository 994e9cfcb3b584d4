"""Cell slots for ``rlm_query`` children: a tenant's cell cap binds them too.

A child's cell runs while its parent's cell waits in ``rlm_query``, holding a slot. The
child takes a free slot of the tenant when there is one; otherwise it waits for its
parent's *lane*: the parent's slot, lent to its children one at a time. A lane is a lock
per parent, and a child's own lane serves its children, so the waits form a tree and
cannot deadlock; each wait is bounded by the cells ahead of it, each bounded by the
policy's cell wall time. Under a cap of one, the four children of ``rlm_query_batched``
run their cells one after another.

A lane lives exactly as long as a child holds or awaits it (a weak reference): the
parent's session ending under its running children neither splits the lane in two nor
leaves it behind.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rlmbox.daemon.admission import Slot


class _Lane:
    """One parent's lent slot (a class, so that a weak reference can hold it)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()


class ChildCells:
    """The lanes of one tenant's sessions, and the slots their children take."""

    def __init__(self, try_take: Callable[[], Slot | None]) -> None:
        self._try_take = try_take
        self._lanes: weakref.WeakValueDictionary[str, _Lane] = weakref.WeakValueDictionary()
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
        lane = self._lane(parent)   # this reference keeps the lane alive while we use it
        with lane.lock:
            yield

    def lanes_in_use(self) -> int:
        """How many parents' lanes a child holds or awaits now."""
        with self._lock:
            return len(self._lanes)

    def _lane(self, parent: str) -> _Lane:
        with self._lock:
            lane = self._lanes.get(parent)
            if lane is None:
                lane = self._lanes[parent] = _Lane()
            return lane
