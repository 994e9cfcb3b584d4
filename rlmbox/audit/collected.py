"""Verifying a cluster's audit logs together: the index, then every node log it names.

A cluster run (``rlmbox.cluster``) leaves one directory per node log and an ``index`` log
written by the driver. The index is itself a hash-chained log; it names each node's log
(``cluster.node``) and anchors its head over time (``cluster.anchor``: the digest that
record ``seq`` of that node's log had). Once the logs are collected into one directory
(``index/`` beside ``nodes/<node-id>/``), verifying them together proves:

1. every node log the index names is present and its chain is intact;
2. each still holds every record the index anchored, byte for byte, so a record deleted
   or rewritten on any node (the tail included, which a chain alone cannot show) fails.

The index's own tail is only as safe as its anchors: keep ``rlmbox audit anchor`` of the
index off the driver's host, as for any single log.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rlmbox.audit.reader import iter_records
from rlmbox.audit.verify import VerifyReport, verify_log
from rlmbox.errors import AuditError

INDEX = "index"
NODES = "nodes"


@dataclass
class CollectedReport:
    """The index's report and each node log's, by the log's path relative to the set, and
    the highest ``seq`` the index anchored in each."""

    index: VerifyReport
    nodes: dict[str, VerifyReport] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    last_anchored: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.index.ok and not self.missing and all(r.ok for r in self.nodes.values())


def node_log_name(node_id: str) -> str:
    """Where a node's log lives inside a collected set (and inside a driver's audit dir)."""
    return f"{NODES}/{node_id}"


def verify_collected(root: Path, *, hmac_key: bytes | None = None,
                     check_bodies: bool = True, public_key: Path | None = None,
                     index_anchors: Mapping[int, str] | None = None) -> CollectedReport:
    """Verifies ``root/index`` and every node log it names against the anchors it holds.

    The node logs' integrity rests on the index (it anchors their heads), so the index is
    what ``public_key`` (its pinned key) and ``index_anchors`` (kept off the host) check:
    without them, whoever can write the whole directory can rewrite the index too."""
    root = Path(root)
    index_dir = root / INDEX
    if not index_dir.is_dir():
        raise AuditError(f"{root} holds no cluster index ({INDEX}/)")
    index = verify_log(index_dir, hmac_key=hmac_key, check_bodies=False,
                       public_key=public_key, anchors=index_anchors)
    report = CollectedReport(index=index)
    if not index.ok:
        return report
    for name, anchors in sorted(_anchors_by_log(index_dir).items()):
        directory = root / name
        report.last_anchored[name] = max(anchors, default=0)
        if not directory.is_dir():
            report.missing.append(name)
            continue
        report.nodes[name] = verify_log(directory, hmac_key=hmac_key,
                                        check_bodies=check_bodies, anchors=anchors)
    return report


def _anchors_by_log(index_dir: Path) -> Mapping[str, dict[int, str]]:
    """``{node log name: {seq: head}}`` from the index's ``cluster.node`` and
    ``cluster.anchor`` records (an index that verified, so these are the driver's words)."""
    logs: dict[str, dict[int, str]] = {}
    for record in iter_records(index_dir):
        log = record.get("log")
        if not isinstance(log, str):
            continue
        anchors = logs.setdefault(log, {})
        if record.get("event") == "cluster.anchor":
            seq, head = record.get("anchored_seq"), record.get("anchored_head")
            if not isinstance(seq, int) or not isinstance(head, str):
                raise AuditError(f"index record {record.get('seq')}: a cluster.anchor needs "
                                 "anchored_seq and anchored_head")
            if anchors.get(seq, head) != head:
                raise AuditError(f"index record {record.get('seq')}: {log} seq {seq} is "
                                 "anchored twice with different heads")
            if seq > 0:
                anchors[seq] = head
    return logs
