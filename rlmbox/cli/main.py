"""The ``rlmbox`` command: a thin dispatcher over one module per subcommand group.

Each module in ``COMMAND_MODULES`` exposes ``register(subparsers)``, which adds its parser(s)
and sets ``handler`` (a function taking the parsed namespace and returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from rlmbox.errors import RlmboxError

COMMAND_MODULES: tuple[str, ...] = (
    "rlmbox.cli.doctor",
    "rlmbox.cli.exec_cells",
    "rlmbox.cli.run_task",
    "rlmbox.cli.policy",
    "rlmbox.cli.audit",
    "rlmbox.cli.image",
    "rlmbox.cli.serve",
)

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlmbox", description="Secure execution runtime for RLM REPLs.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue  # a command group not installed in this build
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except RlmboxError as exc:
        print(f"rlmbox: error: {exc}", file=sys.stderr)
        for detail in getattr(exc, "errors", []):
            print(f"  {detail}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rlmbox: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
