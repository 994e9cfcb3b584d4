"""The value of a cell's final bare expression, as DSPy's interpreters return it.

``dspy.Flex`` reads its result this way (a cell ending in ``json.dumps(...)``). rlmbox's
agent runs a cell with ``exec`` and keeps no such value, so the adapter rewrites the source:
the last statement, when it is an expression, is wrapped in a call that hands its value
back (``FINAL`` with a tag). The splice stays on the expression's own lines, so the other
lines keep their numbers; source that does not parse is sent as it is, for the sandbox to
report the ``SyntaxError``.
"""

from __future__ import annotations

import ast
from typing import Any

TAG = "__rlmbox_value__"
SETUP = f'''
def _rlmbox_value(value):
    import json
    if value is None:
        return
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        value = repr(value)
    FINAL([{TAG!r}, value])
'''


def with_trailing_value(code: str) -> str:
    """``code`` with its final bare expression ``e`` replaced by ``_rlmbox_value((e))``."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return code
    if not tree.body or not isinstance(tree.body[-1], ast.Expr):
        return code
    expr = tree.body[-1].value
    if expr.end_lineno is None or expr.end_col_offset is None:
        return code
    lines = code.splitlines(keepends=True)
    start = _offset(lines, expr.lineno, expr.col_offset)
    end = _offset(lines, expr.end_lineno, expr.end_col_offset)
    return f"{code[:start]}_rlmbox_value(({code[start:end]})){code[end:]}"


def trailing_value(answer: Any) -> tuple[bool, Any]:
    """``(True, value)`` when a cell's answer is a trailing value, else ``(False, None)``."""
    if isinstance(answer, list) and len(answer) == 2 and answer[0] == TAG:
        return True, answer[1]
    return False, None


def _offset(lines: list[str], lineno: int, col_offset: int) -> int:
    """A character offset into the source from ast's (1-based line, UTF-8 byte column)."""
    before = sum(len(line) for line in lines[:lineno - 1])
    return before + len(lines[lineno - 1].encode("utf-8")[:col_offset].decode("utf-8"))
