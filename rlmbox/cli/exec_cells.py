"""``rlmbox exec``: run cell files in one session and print each result."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rlmbox.cli.inputs import add_context_arguments, read_context
from rlmbox.lm.spec import SPEC_HELP, provider_from_spec
from rlmbox.runtime.runtime import Runtime


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("exec", help="run cell files in one sandboxed session")
    parser.add_argument("cells", nargs="+", type=Path, metavar="CELL_FILE")
    parser.add_argument("--policy", default="default", help="preset name or policy file")
    parser.add_argument("--backend", default=None, help="override the policy's backend")
    add_context_arguments(parser)
    parser.add_argument("--lm", default=None, metavar="SPEC",
                        help=f"the model answering llm_query: {SPEC_HELP}")
    parser.add_argument("--allow-unpriced", action="store_true",
                        help="count models with no known price as 0 USD against the "
                             "policy's cost budget (default: refuse them)")
    parser.add_argument("--audit-dir", type=Path, default=None)
    parser.add_argument("--json", action="store_true", help="one JSON object per cell")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    codes = []
    for cell in args.cells:
        try:
            codes.append(cell.read_text(encoding="utf-8"))
        except OSError as exc:
            print(f"rlmbox: cannot read {cell}: {exc.strerror}", file=sys.stderr)
            return 2
    lm = provider_from_spec(args.lm, allow_unpriced=args.allow_unpriced) if args.lm else None
    failed = False
    with Runtime(args.policy, lm=lm, audit_dir=args.audit_dir, pool_size=0) as rt, \
            rt.session(context=read_context(args.context, args.context_format),
                       backend=args.backend) as session:
        for path, code in zip(args.cells, codes, strict=True):
            result = session.exec(code)
            failed = failed or result.status != "ok"
            if args.json:
                print(json.dumps({"cell": str(path), "status": result.status,
                                  "stdout": result.stdout, "stderr": result.stderr,
                                  "error": result.error, "answer": result.answer,
                                  "has_answer": result.has_answer,
                                  "duration_s": result.duration_s,
                                  "truncated": result.truncated}))
            else:
                print(f"── {path} [{result.status}, {result.duration_s * 1000:.1f} ms]")
                sys.stdout.write(result.stdout)
                if result.stderr:
                    sys.stdout.write(result.stderr)
                if result.error:
                    print(result.error)
                if result.has_answer:
                    print(f"answer: {result.answer!r}")
        if not args.json:
            print(f"audit log: {rt.audit_path}")
    return 1 if failed else 0
