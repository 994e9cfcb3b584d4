"""``rlmbox audit verify --cluster DIR``: a cluster's index and every node log it names.

Exit 0 only when the index verifies, every node log it names is present, intact, and still
holds each head the index anchored (``audit/collected.py``). A node log's records after
its last anchor are checked by its chain alone (a node that died keeps such a tail); each
such log is named as a warning.
"""

from __future__ import annotations

import argparse
import sys

from rlmbox.audit.collected import verify_collected
from rlmbox.audit.verify import VerifyReport


def verify_cluster(args: argparse.Namespace) -> int:
    hmac_key = args.hmac_key_file.read_bytes() if args.hmac_key_file else None
    report = verify_collected(args.path, hmac_key=hmac_key, check_bodies=not args.no_bodies)
    _line("index", report.index)
    for name in report.missing:
        print(f"FAIL: {name}: the index names this node log, but it is missing")
    for name, node in report.nodes.items():
        _line(name, node)
        if node.ok and node.last_seq > report.last_anchored.get(name, 0):
            print(f"warning: {name}: records after the last anchored one are checked by the "
                  "chain alone", file=sys.stderr)
    verdict = "OK" if report.ok else "FAIL"
    print(f"{verdict}: cluster audit set {args.path}: index + {len(report.nodes)} node log(s)"
          + (f", {len(report.missing)} missing" if report.missing else ""))
    return 0 if report.ok else 1


def _line(name: str, report: VerifyReport) -> None:
    if report.ok:
        print(f"ok: {name}: {report.events} records (seq 1..{report.last_seq}), "
              f"{report.anchors} anchor(s) held")
    else:
        seq = "?" if report.first_bad_seq is None else str(report.first_bad_seq)
        print(f"FAIL: {name}: first bad record: seq {seq} ({report.kind}): {report.reason}")
