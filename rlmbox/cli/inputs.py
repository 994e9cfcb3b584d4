"""Files named on the command line, read with errors that say which file and what is wrong."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from rlmbox.errors import UsageError

CONTEXT_FORMATS = ("text", "json")


def add_context_arguments(parser: Any, *, required: bool = False) -> None:
    """``--context FILE`` and ``--context-format``, the same for ``exec`` and ``run``."""
    parser.add_argument("--context", type=Path, default=None, required=required,
                        help="a UTF-8 file loaded as `context`")
    parser.add_argument("--context-format", choices=CONTEXT_FORMATS, default="text",
                        help="text (default): `context` is the file's text; json: parsed, "
                             "so `context` is a dict or list")


def read_cells(names: list[str], codes: list[str]) -> list[tuple[str, str]]:
    """``(label, code)`` for every cell named on a command line: files and ``-`` (standard
    input) in order, then each ``-c CODE``.

    Raises:
        UsageError: a file cannot be read or is not UTF-8, or there are no cells.
    """
    cells: list[tuple[str, str]] = []
    for name in names:
        if name == "-":
            cells.append(("<stdin>", sys.stdin.read()))
            continue
        try:
            cells.append((name, Path(name).read_text(encoding="utf-8")))
        except OSError as exc:
            raise UsageError(f"cannot read {name}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise UsageError(f"{name} is not UTF-8 text") from exc
    cells += [(f"-c #{n}", code) for n, code in enumerate(codes, 1)]
    if not cells:
        raise UsageError("no cells: give CELL_FILE arguments, '-' for stdin, or -c CODE")
    return cells


def read_context(path: Path | None, context_format: str = "text") -> Any:
    """The context a file holds: its text, or parsed JSON when asked.

    Raises:
        UsageError: the file cannot be read, is not UTF-8, or is not the JSON asked for.
    """
    if path is None:
        return None
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the context {path}: {exc.strerror}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                         f"{exc.start}); pass a text file") from exc
    if context_format != "json":
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not valid JSON (--context-format json): {exc.msg} at "
                         f"line {exc.lineno}, column {exc.colno}") from exc
