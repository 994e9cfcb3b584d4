"""Helpers both adapters share: how an rlmbox cell result reads in a frontend's terms."""

from __future__ import annotations

import json
import re

from rlmbox.runtime.results import ExecResult

_COMPILE_ERRORS = ("SyntaxError", "IndentationError", "TabError")
_SHOW_VARS_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*): ([A-Za-z_][A-Za-z0-9_.]*)$")


def error_line(error: str) -> str:
    """``Type: message``, the last line of a traceback: what native REPLs show of an error.

    rlmbox reports the model's own frames as a traceback; the frontends' in-process REPLs
    append only ``f"{type(e).__name__}: {e}"``, so that is what the model sees here too.
    """
    lines = [line for line in error.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "Error"


def is_compile_error(result: ExecResult) -> bool:
    """A cell that did not compile (no traceback frames, a syntax error class)."""
    error = result.error or ""
    return (result.status == "error" and not error.startswith("Traceback")
            and error_line(error).startswith(_COMPILE_ERRORS))


def parse_show_vars(stdout: str) -> dict[str, str]:
    """``SHOW_VARS()`` output as ``{name: type name}``.

    The output comes from the sandbox, so a line that does not look like ``name: type`` is
    skipped rather than trusted (model code chooses its own class names).
    """
    found: dict[str, str] = {}
    for line in stdout.splitlines():
        match = _SHOW_VARS_LINE.match(line.strip())
        if match:
            found[match.group(1)] = match.group(2)
    return found


def python_literal(value: object) -> str:
    """Source text that rebuilds a JSON value inside the sandbox (``json.loads`` of a str).

    ``repr`` of a JSON string is a valid Python literal whatever the text holds, so no value
    can break out of the assignment it is placed in.
    """
    return f"__import__('json').loads({json.dumps(value, ensure_ascii=False)!r})"
