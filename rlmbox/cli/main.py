"""The ``rlmbox`` command: a thin dispatcher over one module per subcommand group.

Each module in ``COMMAND_MODULES`` exposes ``register(subparsers)``, which adds its parser(s)
and sets ``handler`` (a function taking the parsed namespace and returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from importlib import metadata

from rlmbox.errors import RlmboxError

COMMAND_MODULES: tuple[str, ...] = (
    "rlmbox.cli.doctor",
    "rlmbox.cli.exec_cells",
    "rlmbox.cli.run_task",
    "rlmbox.cli.policy",
    "rlmbox.cli.audit",
    "rlmbox.cli.image",
    "rlmbox.cli.gc",
    "rlmbox.cli.environment",
    "rlmbox.cli.serve",
    "rlmbox.cli.client",
)

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlmbox", description="Secure execution runtime for RLM REPLs.")
    parser.add_argument("--version", action="version", version=f"rlmbox {_version()}")
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


def _version() -> str:
    try:
        return metadata.version("rlmbox")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _report(exc: RlmboxError, as_json: bool) -> None:
    """An error as one line and its details on stderr, or as JSON on stdout for ``--json``
    (so a script reading stdout gets a JSON object whatever happened)."""
    details = [str(d) for d in getattr(exc, "errors", [])]
    if as_json:
        print(json.dumps({"error": str(exc), "type": type(exc).__name__, "details": details}))
    print(f"rlmbox: error: {exc}", file=sys.stderr)
    for detail in details:
        print(f"  {detail}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except RlmboxError as exc:
        _report(exc, bool(getattr(args, "json", False)))
        return 2
    except KeyboardInterrupt:
        print("rlmbox: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader left (``rlmbox audit show | head``): not an error worth a traceback;
        # point stdout at /dev/null so the interpreter's final flush does not raise again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 141


if __name__ == "__main__":
    sys.exit(main())
