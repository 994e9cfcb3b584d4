"""``rlmbox client ...``: a persistent daemon session from a shell, without Python.

    export RLMBOX_TOKEN=...            # rlmbox token create --tenant NAME
    sid=$(rlmbox client session create --policy strict --context big.txt --id-only)
    rlmbox client exec "$sid" -c 'x = len(context)'
    rlmbox client exec "$sid" -c 'print(x)'
    rlmbox client interrupt "$sid"     # from another shell, while a cell runs
    rlmbox client files put "$sid" data.csv /tmp/data.csv   # and get, ls (client_files.py)
    rlmbox client session close "$sid"

It talks to the daemon's Unix socket (``--socket``, default the daemon's) or TCP (``--url``)
with ``--token`` or ``$RLMBOX_TOKEN`` (the variable keeps the token out of ``ps``). Errors
are one line and exit 2 (``rlmbox.cli.main``); ``--json`` prints JSON on stdout instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from rlmbox.cli.display import print_outcome, result_json, stream_output
from rlmbox.cli.inputs import add_context_arguments, read_cells, read_context
from rlmbox.daemon.client import Client
from rlmbox.daemon.paths import default_socket
from rlmbox.errors import UsageError

TOKEN_VARIABLE = "RLMBOX_TOKEN"  # noqa: S105 - the name of a variable, not a token


def register(subparsers: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_mutually_exclusive_group()
    where.add_argument("--socket", type=Path, default=None,
                       help="the daemon's Unix socket (default: the daemon's default)")
    where.add_argument("--url", default=None, help="the daemon over TCP, http://HOST:PORT")
    common.add_argument("--token", default=None,
                        help=f"bearer token (default: ${TOKEN_VARIABLE}, which ps cannot see)")
    common.add_argument("--json", action="store_true", help="print JSON on stdout")

    client = subparsers.add_parser("client", help="use a running daemon from the shell")
    actions = client.add_subparsers(dest="client_command", metavar="ACTION", required=True)
    session = actions.add_parser("session", help="create, list or close sessions")
    verbs = session.add_subparsers(dest="session_command", metavar="VERB", required=True)
    create = verbs.add_parser("create", parents=[common], help="start a session")
    create.add_argument("--policy", default=None, help="a policy the daemon loaded")
    create.add_argument("--backend", default=None, help="a backend the policy allows")
    create.add_argument("--id-only", action="store_true", help="print only the session id")
    add_context_arguments(create)
    create.set_defaults(handler=run_create)
    verbs.add_parser("list", parents=[common], help="your sessions, newest first") \
        .set_defaults(handler=run_list)
    close = verbs.add_parser("close", parents=[common], help="close a session")
    close.add_argument("session")
    close.set_defaults(handler=run_close)

    execute = actions.add_parser("exec", parents=[common], help="run cells in a session")
    execute.add_argument("session")
    execute.add_argument("cells", nargs="*", metavar="CELL_FILE",
                         help="files of Python code, run in order; '-' reads stdin")
    execute.add_argument("-c", "--code", action="append", default=[], metavar="CODE",
                         help="a cell given inline (repeatable; runs after the files)")
    execute.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                         help="wall time per cell (at most the policy's cell_timeout_s)")
    execute.add_argument("--stop-on-error", action="store_true",
                         help="stop at the first cell that does not end ok")
    execute.set_defaults(handler=run_exec)

    interrupt = actions.add_parser("interrupt", parents=[common],
                                   help="interrupt the session's running cell")
    interrupt.add_argument("session")
    interrupt.set_defaults(handler=run_interrupt)

    from rlmbox.cli import client_files  # noqa: PLC0415 - it imports connect from here
    client_files.register(actions, common)


def connect(args: argparse.Namespace) -> Client:
    """A client for the daemon the arguments name."""
    token = args.token or os.environ.get(TOKEN_VARIABLE)
    if not token:
        raise UsageError(f"no token: set ${TOKEN_VARIABLE} or pass --token (the operator "
                         "issues one with: rlmbox token create --tenant NAME)")
    if args.url:
        return Client(url=args.url, token=token)
    return Client(socket=args.socket or default_socket(), token=token)


def _print(args: argparse.Namespace, value: Any, text: str) -> None:
    print(json.dumps(value) if args.json else text, flush=True)


def _session_line(row: dict[str, Any]) -> str:
    return f"{row['id']}  {row['state']:<7} policy {row['policy']}, backend {row['backend']}"


def run_create(args: argparse.Namespace) -> int:
    context = read_context(args.context, args.context_format)
    with connect(args) as client:
        row = client.create_session(policy=args.policy, backend=args.backend, context=context)
    _print(args, row, row["id"] if args.id_only else _session_line(row))
    return 0


def run_list(args: argparse.Namespace) -> int:
    with connect(args) as client:
        rows = client.sessions()
    _print(args, rows, "\n".join(_session_line(r) for r in rows) or "(no sessions)")
    return 0


def run_close(args: argparse.Namespace) -> int:
    with connect(args) as client:
        client.close_session(args.session)
    _print(args, {"closed": args.session}, f"closed {args.session}")
    return 0


def run_interrupt(args: argparse.Namespace) -> int:
    with connect(args) as client:
        interrupted = client.interrupt(args.session)
    _print(args, {"interrupted": interrupted},
           "interrupted" if interrupted else "no cell was running")
    return 0


def run_exec(args: argparse.Namespace) -> int:
    """Each cell's output streams as it comes (``--json``: one object per cell at its
    end); Ctrl-C interrupts the running cell in the daemon, and exits 130."""
    cells = read_cells(args.cells, args.code)
    failed = False
    with connect(args) as client:
        for label, code in cells:
            try:
                if args.json:
                    result = client.exec(args.session, code, timeout=args.timeout)
                    print(json.dumps(result_json(label, result)), flush=True)
                else:
                    print(f"── {label}", flush=True)
                    result = client.exec_stream(args.session, code, on_output=stream_output,
                                                timeout=args.timeout)
                    print_outcome(result)
            except KeyboardInterrupt:
                client.interrupt(args.session)
                print("rlmbox: interrupted the running cell", file=sys.stderr)
                return 130
            failed = failed or result.status != "ok"
            if failed and args.stop_on_error:
                break
    return 1 if failed else 0
