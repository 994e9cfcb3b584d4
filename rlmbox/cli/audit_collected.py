"""``rlmbox audit verify --cluster DIR``: a cluster's index and every node log it names.

Exit 0 only when the index verifies, every node log it names is present, intact, and still
holds each head the index anchored (``audit/collected.py``). A node log's records after
its last anchor are checked by its chain alone (a node that died keeps such a tail); each
such log is named as a warning.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rlmbox.audit.anchor import load_anchors
from rlmbox.audit.collected import verify_collected
from rlmbox.audit.verify import VerifyReport


def verify_cluster(args: argparse.Namespace, pinned_key: Path | None) -> int:
    """``pinned_key`` and ``--anchors`` check the index, on which the node logs rest; an
    unsealed index is INCOMPLETE unless ``--allow-unsealed``, as for one log."""
    hmac_key = args.hmac_key_file.read_bytes() if args.hmac_key_file else None
    anchors = load_anchors(args.anchors) if args.anchors else None
    report = verify_collected(args.path, hmac_key=hmac_key, check_bodies=not args.no_bodies,
                              public_key=pinned_key, index_anchors=anchors)
    _line("index", report.index)
    pinned = report.index.key_source in ("pinned public key", "hmac key given")
    print(f"index key: {report.index.key_source}" + ("" if pinned else " (not pinned: whoever "
          "can write the directory can re-sign the index; pin it with --public-key)")
          + (f"; {report.index.anchors} off-host anchor(s) held" if anchors else ""),
          file=sys.stderr)
    for name in report.missing:
        print(f"FAIL: {name}: the index names this node log, but it is missing")
    for name, node in report.nodes.items():
        _line(name, node)
        if node.ok and node.last_seq > report.last_anchored.get(name, 0):
            print(f"warning: {name}: records after the last anchored one are checked by the "
                  "chain alone", file=sys.stderr)
    sealed = report.index.sealed or args.allow_unsealed
    verdict = ("OK" if sealed else "INCOMPLETE") if report.ok else "FAIL"
    print(f"{verdict}: cluster audit set {args.path}: index + {len(report.nodes)} node log(s)"
          + (f", {len(report.missing)} missing" if report.missing else "")
          + ("" if sealed or not report.ok else
             f"; the index is not sealed ({report.index.unsealed_explanation()}): "
             "--allow-unsealed accepts this weaker check"))
    return 0 if report.ok and sealed else 1


def _line(name: str, report: VerifyReport) -> None:
    if report.ok:
        print(f"ok: {name}: {report.events} records (seq 1..{report.last_seq}), "
              f"{report.anchors} anchor(s) held")
    else:
        seq = "?" if report.first_bad_seq is None else str(report.first_bad_seq)
        print(f"FAIL: {name}: first bad record: seq {seq} ({report.kind}): {report.reason}")
