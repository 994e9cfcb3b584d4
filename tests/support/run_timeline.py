"""When each test of this run started, so that a leftover found at the end of the run (a
container, say) can be traced to the test that was running when it was made."""

from __future__ import annotations

import bisect
import time
from datetime import datetime

_STARTS: list[float] = []
_NAMES: list[str] = []


def started(nodeid: str) -> None:
    """Notes that ``nodeid`` starts now (called from the root conftest's setup hook)."""
    _STARTS.append(time.time())
    _NAMES.append(nodeid)


def running_at(when: datetime) -> str:
    """The test that had started last at ``when`` (an aware datetime), or why none."""
    index = bisect.bisect_right(_STARTS, when.timestamp()) - 1
    return _NAMES[index] if index >= 0 else "before the first test"
