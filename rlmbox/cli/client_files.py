"""``rlmbox client files put|get|ls``: files in and out of a daemon session's writable area.

    rlmbox client files put "$sid" data.csv /tmp/data.csv
    rlmbox client files get "$sid" /tmp/result.json result.json   # '-' or nothing: stdout
    rlmbox client files ls "$sid" /tmp
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rlmbox.cli.client import connect
from rlmbox.errors import UsageError


def register(actions: Any, common: argparse.ArgumentParser) -> None:
    files = actions.add_parser("files", help="copy files into and out of a session")
    verbs = files.add_subparsers(dest="files_command", metavar="VERB", required=True)
    put = verbs.add_parser("put", parents=[common], help="copy a local file in")
    put.add_argument("session")
    put.add_argument("local", help="a local file; '-' reads stdin")
    put.add_argument("remote", help="a path in the sandbox's writable area, e.g. /tmp/x")
    put.set_defaults(handler=run_put)
    get = verbs.add_parser("get", parents=[common], help="copy a file out")
    get.add_argument("session")
    get.add_argument("remote")
    get.add_argument("local", nargs="?", default="-", help="where to write ('-': stdout)")
    get.set_defaults(handler=run_get)
    ls = verbs.add_parser("ls", parents=[common], help="list a directory")
    ls.add_argument("session")
    ls.add_argument("remote", help="a directory in the writable area, e.g. /tmp")
    ls.set_defaults(handler=run_ls)


def run_put(args: argparse.Namespace) -> int:
    try:
        data = sys.stdin.buffer.read() if args.local == "-" else Path(args.local).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {args.local}: {exc.strerror}") from exc
    with connect(args) as client:
        client.write_file(args.session, args.remote, data)
    if args.json:
        print(json.dumps({"path": args.remote, "size": len(data)}))
    return 0


def run_get(args: argparse.Namespace) -> int:
    with connect(args) as client:
        data = client.read_file(args.session, args.remote)
    if args.local == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return 0
    try:
        Path(args.local).write_bytes(data)
    except OSError as exc:
        raise UsageError(f"cannot write {args.local}: {exc.strerror}") from exc
    return 0


def run_ls(args: argparse.Namespace) -> int:
    with connect(args) as client:
        entries = client.list_files(args.session, args.remote)
    if args.json:
        print(json.dumps(entries))
        return 0
    for entry in sorted(entries, key=lambda e: e["name"]):
        print(f"{entry['kind']:<8} {entry['size']:>12}  {entry['name']}")
    return 0
