"""``rlmbox exec``: run cells in one session and print each result as it happens.

Cells come from files, ``-`` (standard input) and ``-c CODE``, in that order: files and ``-``
as given, then each ``-c``. Output is streamed while a cell runs (plain mode); ``--json``
prints one object per cell when it ends.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rlmbox.cli.display import print_header, print_outcome, result_json, stream_output
from rlmbox.cli.inputs import add_context_arguments, read_cells, read_context
from rlmbox.lm.spec import SPEC_HELP, provider_from_spec
from rlmbox.runtime.runtime import Runtime


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("exec", help="run cells in one sandboxed session")
    parser.add_argument("cells", nargs="*", metavar="CELL_FILE",
                        help="files of Python code, run in order; '-' reads a cell from stdin")
    parser.add_argument("-c", "--code", action="append", default=[], metavar="CODE",
                        help="a cell given inline (repeatable; runs after the files)")
    parser.add_argument("--policy", default="default", help="preset name or policy file")
    parser.add_argument("--backend", default=None, help="override the policy's backend")
    add_context_arguments(parser)
    parser.add_argument("--lm", default=None, metavar="SPEC",
                        help=f"the model answering llm_query: {SPEC_HELP}")
    parser.add_argument("--allow-unpriced", action="store_true",
                        help="count models with no known price as 0 USD against the "
                             "policy's cost budget (default: refuse them)")
    parser.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                        help="wall time per cell (at most the policy's limits.cell_timeout_s)")
    parser.add_argument("--stop-on-error", action="store_true",
                        help="stop at the first cell that does not end ok")
    parser.add_argument("--audit-dir", type=Path, default=None)
    parser.add_argument("--json", action="store_true", help="one JSON object per cell")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    cells = read_cells(args.cells, args.code)
    lm = provider_from_spec(args.lm, allow_unpriced=args.allow_unpriced) if args.lm else None
    failed = False
    with Runtime(args.policy, lm=lm, audit_dir=args.audit_dir, pool_size=0) as rt, \
            rt.session(context=read_context(args.context, args.context_format),
                       backend=args.backend) as session:
        if not args.json:
            print_header(rt, session)
        for label, code in cells:
            if args.json:
                result = session.exec(code, timeout=args.timeout)
                print(json.dumps(result_json(label, result)), flush=True)
            else:
                print(f"── {label}", flush=True)
                result = session.exec(code, timeout=args.timeout, on_output=stream_output)
                print_outcome(result)
            failed = failed or result.status != "ok"
            if failed and args.stop_on_error:
                break
        if not args.json:
            print(f"audit log: {rt.audit_path}")
    return 1 if failed else 0
