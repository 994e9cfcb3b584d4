"""The ``--quick``/``--smoke`` switch the benchmarks share: one place says what each means."""

from __future__ import annotations

import argparse
from typing import TypeVar

T = TypeVar("T")


def mode_parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser described by the module docstring's first line, with the two modes."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="fewer repetitions")
    mode.add_argument("--smoke", action="store_true", help="a handful, to prove it runs")
    return parser


def chosen(args: argparse.Namespace, *, smoke: T, quick: T, full: T) -> T:
    """The repetitions the parsed mode asks for."""
    return smoke if args.smoke else quick if args.quick else full
