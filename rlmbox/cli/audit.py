"""``rlmbox audit verify|anchor|show|view|stats``: check, anchor, read, view and summarise
a log."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rlmbox.audit.anchor import anchor_line, load_anchors
from rlmbox.audit.bodies import BodyStore, is_digest
from rlmbox.audit.files import BODIES
from rlmbox.audit.reader import iter_records, log_directory
from rlmbox.audit.stats import CallStats, aggregate
from rlmbox.audit.verify import verify_log
from rlmbox.audit.view.page import PageRequest
from rlmbox.audit.view.report import ViewOptions, write_report
from rlmbox.audit.view.verdict import verdict_of
from rlmbox.cli.audit_collected import verify_cluster
from rlmbox.cli.terminal import terminal_safe
from rlmbox.errors import AuditError

#: Environment variable naming the pinned Ed25519 public key (PEM) when no flag is given.
PUBLIC_KEY_ENV = "RLMBOX_AUDIT_PUBLIC_KEY"
_FOLD_LINES = 20
_UNPINNED = ("warning: checkpoints were checked against the key stored beside the log; "
             "whoever can rewrite the log can replace that key too. Pin the key: "
             f"--public-key FILE or {PUBLIC_KEY_ENV}=FILE")
_HEADER_FIELDS = ("seq", "ts", "event", "session", "parent", "depth", "tenant", "severity",
                  "prev", "bodies")


def register(subparsers: Any) -> None:
    """Add ``audit`` with its ``verify``, ``anchor``, ``show``, ``view``, ``stats`` and
    ``erase`` subcommands."""
    audit = subparsers.add_parser("audit", help="verify, show and summarise an audit log")
    sub = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)

    verify = sub.add_parser("verify", help="check the hash chain, checkpoints and bodies")
    verify.add_argument("path", type=Path, help="log directory (or a file in it)")
    verify.add_argument("--public-key", type=Path,
                        help=f"pinned Ed25519 public key (PEM); default ${PUBLIC_KEY_ENV}")
    verify.add_argument("--hmac-key-file", type=Path, help="file holding the HMAC key bytes")
    verify.add_argument("--no-bodies", action="store_true", help="skip checking bodies")
    verify.add_argument("--anchors", type=Path,
                        help="file of off-host anchors (from `rlmbox audit anchor`) the log "
                             "must still hold")
    verify.add_argument("--allow-unsealed", action="store_true",
                        help="accept records no signed checkpoint covers yet (a log still "
                             "being written); their truncation cannot be detected")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.add_argument("--cluster", action="store_true",
                        help="PATH is a cluster's collected audit set (index/ and nodes/): "
                             "verify the index and every node log against its anchors")
    verify.set_defaults(handler=_verify)

    anchor = sub.add_parser(
        "anchor", help="verify, then print the head as an anchor line to keep off the host")
    anchor.add_argument("path", type=Path, help="log directory (or a file in it)")
    anchor.add_argument("--public-key", type=Path,
                        help=f"pinned Ed25519 public key (PEM); default ${PUBLIC_KEY_ENV}")
    anchor.add_argument("--hmac-key-file", type=Path, help="file holding the HMAC key bytes")
    anchor.add_argument("--append", type=Path, metavar="FILE",
                        help="also append the line to FILE (then copy FILE off the host)")
    anchor.set_defaults(handler=_anchor)

    show = sub.add_parser("show", help="a readable timeline, bodies inlined")
    show.add_argument("path", type=Path)
    show.add_argument("--session", help="only this session and its descendants")
    show.add_argument("--event", help="only events of this type")
    show.add_argument("--limit", type=int, default=None, metavar="N",
                      help="only the last N matching records")
    show.add_argument("--fold", type=int, default=_FOLD_LINES, metavar="LINES",
                      help=f"show the first and last LINES/2 lines of a longer body "
                           f"(default {_FOLD_LINES}; 0 shows every line)")
    show.add_argument("--json", action="store_true", help="one JSON record per line")
    show.set_defaults(handler=_show)

    view = sub.add_parser(
        "view", help="write one self-contained HTML report: tree, cells, calls, budget, verdict")
    view.add_argument("path", type=Path, help="log directory (or a file in it)")
    view.add_argument("--session", help="only this session and its descendants")
    view.add_argument("-o", "--output", type=Path, default=Path("report.html"),
                      help="where to write the report (default: report.html)")
    view.add_argument("--page", type=int, default=1, metavar="N",
                      help="which page of cells to show (default 1)")
    view.add_argument("--page-size", type=int, default=1000, metavar="CELLS",
                      help="cells a page holds (default 1000)")
    view.add_argument("--public-key", type=Path,
                      help=f"pinned Ed25519 public key (PEM); default ${PUBLIC_KEY_ENV}")
    view.add_argument("--hmac-key-file", type=Path, help="file holding the HMAC key bytes")
    view.add_argument("--anchors", type=Path, help="file of off-host anchors to check")
    view.set_defaults(handler=_view)

    stats = sub.add_parser("stats", help="calls, denials, tokens and cost per session/function")
    stats.add_argument("path", type=Path)
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(handler=_stats)

    erase = sub.add_parser(
        "erase", help="erase bodies by digest (personal data, say); the chain still verifies")
    erase.add_argument("path", type=Path, help="log directory (or a file in it)")
    erase.add_argument("sha256", nargs="+", help="digest of a body, as records name it")
    erase.set_defaults(handler=_erase)


def _pinned_key(args: argparse.Namespace) -> Path | None:
    """The flag's key, else the environment's; None means the log's own ``audit.pub``."""
    if args.public_key is not None:
        return Path(args.public_key)
    configured = os.environ.get(PUBLIC_KEY_ENV)
    return Path(configured) if configured else None


def _verify(args: argparse.Namespace) -> int:
    if args.cluster:
        return verify_cluster(args, _pinned_key(args))
    hmac_key = args.hmac_key_file.read_bytes() if args.hmac_key_file else None
    anchors = load_anchors(args.anchors) if args.anchors else None
    report = verify_log(args.path, public_key=_pinned_key(args), hmac_key=hmac_key,
                        check_bodies=not args.no_bodies, anchors=anchors)
    pinned = report.key_source in ("pinned public key", "hmac key given")
    complete = report.sealed or args.allow_unsealed
    if args.json:
        print(json.dumps({**asdict(report), "sealed": report.sealed}, indent=2, sort_keys=True))
        return 0 if report.ok and complete else 1
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not pinned and report.checkpoints:
        print(_UNPINNED, file=sys.stderr)
    for missing in report.missing_bodies:
        print(f"warning: record {missing.seq}: body {missing.name!r} ({missing.sha256[:12]}...) "
              "is missing (erased?); the chain does not depend on it", file=sys.stderr)
    if report.ok and not report.sealed and not args.allow_unsealed:
        print(f"INCOMPLETE: records 1..{report.last_seq} are intact, but "
              f"{report.unsealed_explanation()}. For a log that is still being written, "
              "`--allow-unsealed` accepts this weaker check; `rlmbox audit anchor` pins what "
              "is there now.")
        return 1
    if report.ok:
        if not report.sealed:
            print(f"warning: {report.unsealed_explanation()} (accepted: --allow-unsealed)",
                  file=sys.stderr)
        print(f"OK: {report.events} records (seq 1..{report.last_seq}) in "
              f"{len(report.files)} file(s), {report.checkpoints} signed checkpoint(s), "
              f"head {report.head[:16]}; key: {report.key_source}"
              + ("" if pinned else " (not pinned)")
              + (f"; {report.anchors} off-host anchor(s) held" if anchors else ""))
        return 0
    seq = "?" if report.first_bad_seq is None else str(report.first_bad_seq)
    print(f"FAIL: first bad record: seq {seq} ({report.kind}): {report.reason}")
    return 1


def _anchor(args: argparse.Namespace) -> int:
    hmac_key = args.hmac_key_file.read_bytes() if args.hmac_key_file else None
    report = verify_log(args.path, public_key=_pinned_key(args), hmac_key=hmac_key,
                        check_bodies=False)
    line = anchor_line(report)   # refuses a log that does not verify
    if args.append:
        with open(args.append, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    print(line)
    return 0


def _view(args: argparse.Namespace) -> int:
    if args.page < 1 or args.page_size < 1:
        raise AuditError("--page and --page-size must be at least 1")
    options = ViewOptions(
        public_key=_pinned_key(args),
        hmac_key=args.hmac_key_file.read_bytes() if args.hmac_key_file else None,
        anchors=load_anchors(args.anchors) if args.anchors else None,
        session=args.session, page=PageRequest(args.page, args.page_size))
    report = write_report(args.path, args.output, options)
    verdict = verdict_of(report.verification, anchors_given=options.anchors is not None)
    print(f"wrote {args.output}")
    print(verdict.headline)
    return 0 if verdict.level == "verified" else 1


def _descendants(records: list[dict[str, Any]], root: str) -> set[str]:
    sessions = {root}
    changed = True
    while changed:
        changed = False
        for record in records:
            session, parent = record.get("session"), record.get("parent")
            if parent in sessions and isinstance(session, str) and session not in sessions:
                sessions.add(session)
                changed = True
    return sessions


def _show(args: argparse.Namespace) -> int:
    directory = log_directory(args.path)
    store = BodyStore(directory / BODIES)
    records = list(iter_records(directory))
    total = len(records)
    filters = []
    if args.session:
        keep = _descendants(records, args.session)
        records = [r for r in records if r.get("session") in keep]
        filters.append(f"--session {args.session}")
    if args.event:
        records = [r for r in records if r.get("event") == args.event]
        filters.append(f"--event {args.event}")
    if filters and not records:
        print(f"rlmbox: no record matches {' '.join(filters)} ({total} record(s) in the log)",
              file=sys.stderr)
        return 1
    hidden = 0
    if args.limit is not None and 0 <= args.limit < len(records):
        hidden = len(records) - args.limit
        records = records[hidden:]
    if hidden and not args.json:
        print(f"... {hidden} earlier record(s) not shown (--limit {args.limit})")
    for record in records:
        if args.json:   # ASCII escapes: no raw control character reaches the terminal
            print(json.dumps(record, sort_keys=True))
        else:
            _print_record(record, store, args.fold)
    return 0


def _print_record(record: dict[str, Any], store: BodyStore, fold: int) -> None:
    for line in _record_lines(record, store, fold):
        print(terminal_safe(line))


def _folded(lines: list[str], fold: int) -> list[str]:
    """The first and last ``fold // 2`` lines of a longer body, and a count of the rest."""
    if fold <= 0 or len(lines) <= fold:
        return lines
    half = fold // 2
    return [*lines[:half], f"[{len(lines) - 2 * half} more line(s) folded: --fold 0 shows all]",
            *lines[-half:]]


def _record_lines(record: dict[str, Any], store: BodyStore, fold: int = 0) -> list[str]:
    """The readable lines of one record, raw: the caller escapes them for the terminal."""
    lines: list[str] = []
    indent = "  " * _as_int(record.get("depth"))
    lines.append(f"{indent}#{record.get('seq')} {record.get('ts')} {record.get('severity', '')} "
                 f"{record.get('event')} session={record.get('session')}"
                 + (f" parent={record.get('parent')}" if record.get("parent") else "")
                 + (f" tenant={record.get('tenant')}" if record.get("tenant") else ""))
    raw_bodies = record.get("bodies")
    bodies: list[Any] = raw_bodies if isinstance(raw_bodies, list) else []
    for key in sorted(record):
        if key in _HEADER_FIELDS:
            continue
        if any(key in (f"{n}_sha256", f"{n}_bytes") for n in bodies if isinstance(n, str)):
            continue
        lines.append(f"{indent}    {key}: {json.dumps(record[key], ensure_ascii=False)}")
    for name in bodies:
        digest = record.get(f"{name}_sha256")
        data = store.read(digest) if is_digest(digest) else None
        label = f"{indent}    --- {name} ({record.get(f'{name}_bytes')} bytes)"
        if data is None:
            lines.append(f"{label}: [body missing: erased or never stored]")
            continue
        lines.append(f"{label}:")
        # split on "\n" only: a "\r" or other separator is shown escaped, never obeyed
        text = data.decode("utf-8", "replace").removesuffix("\n")
        body = _folded(text.split("\n"), fold) if text else []
        lines += [f"{indent}    | {text_line}" for text_line in body]
    return lines


def _as_int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value < 32 else 0


def _stats(args: argparse.Namespace) -> int:
    table = aggregate(iter_records(args.path))
    if args.json:
        print(json.dumps([{"session": s, "function": f, **asdict(v)}
                          for (s, f), v in sorted(table.items())], indent=2))
        return 0
    header = f"{'session':<24} {'function':<22} {'calls':>7} {'denied':>7} " \
             f"{'tokens_in':>10} {'tokens_out':>10} {'cost_usd':>10}"
    print(header)
    print("-" * len(header))
    totals = CallStats()
    for (session, function), row in sorted(table.items()):
        # both come from the log, where the sandbox may have chosen them (a forged call)
        shown_session, shown_function = terminal_safe(session), terminal_safe(function)
        print(f"{shown_session[:24]:<24} {shown_function[:22]:<22} {row.calls:>7} "
              f"{row.denials:>7} "
              f"{row.tokens_in:>10} {row.tokens_out:>10} {row.cost_usd:>10.4f}")
        totals.calls += row.calls
        totals.denials += row.denials
        totals.tokens_in += row.tokens_in
        totals.tokens_out += row.tokens_out
        totals.cost_usd += row.cost_usd
    print("-" * len(header))
    print(f"{'total':<24} {'':<22} {totals.calls:>7} {totals.denials:>7} "
          f"{totals.tokens_in:>10} {totals.tokens_out:>10} {totals.cost_usd:>10.4f}")
    return 0


def _erase(args: argparse.Namespace) -> int:
    store = BodyStore(log_directory(args.path) / BODIES)
    bad = [digest for digest in args.sha256 if not is_digest(digest)]
    if bad:
        print(f"error: not a SHA-256 digest: {', '.join(bad)}", file=sys.stderr)
        return 2
    missing = [digest for digest in args.sha256 if not store.erase(digest)]
    for digest in missing:
        print(f"warning: no body {digest} is stored", file=sys.stderr)
    print(f"erased {len(args.sha256) - len(missing)} body(ies); records naming them still "
          "verify and list them as missing")
    return 1 if missing else 0
