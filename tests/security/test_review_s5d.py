"""Review s5d: attacks on the audit append's plain-record fast path (``is_plain``).

An event ``is_plain`` accepts is recorded uncopied: its nested lists and dicts are the
caller's. ``is_plain`` runs before the log's lock, the serialisation under it, so a
caller's thread that changes a nested value in between gets a value recorded that
``normalize`` would have refused (NaN, a dataclass), and ``append`` returns a record that
is not what was written. Bytes hashed and bytes written stay one and the same (held:
the chain verifies).
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path
from typing import Any

from rlmbox.audit.log import AuditLog
from rlmbox.audit.verify import verify_log
from rlmbox.errors import AuditRecordInvalid


@dataclasses.dataclass
class NotJson:
    x: int = 1


def test_a_nested_value_changed_during_append_is_refused_or_not_written(
        tmp_path: Path) -> None:
    log = AuditLog(tmp_path)
    shared: dict[str, Any] = {"values": [1.5]}
    returned: list[dict[str, Any]] = []
    refused: list[BaseException] = []

    def append() -> None:
        try:
            returned.append(log.append("x.race", v=shared))
        except AuditRecordInvalid as exc:
            refused.append(exc)

    # the interleaving, made certain: the append passes its processors (is_plain) and
    # waits for the chain's lock while the caller's data changes
    with log._lock:   # holds the chain so that the race is deterministic
        worker = threading.Thread(target=append)
        worker.start()
        time.sleep(0.3)
        shared["values"] += [float("nan"), NotJson()]
    worker.join(10)
    log.close()
    assert verify_log(tmp_path).ok   # held: what was hashed is what was written
    written = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()
               if '"x.race"' in line]
    # the promise: a value normalize refuses is never recorded; the record is either the
    # event as appended, or refused
    assert refused or written[0]["v"] == {"values": [1.5]}, written
