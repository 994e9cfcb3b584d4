"""A cell's code as it crosses to the agent: source, or a code object the host compiled.

Under ``code: restricted`` the host rewrites the cell's syntax tree (the code gate) and
compiles that tree itself, so line numbers stay the user's and no rewritten source has to
round-trip through ``ast.unparse`` (which wrote ``x[1:3]`` as ``_getitem_(x, 1:3)``). The
code object travels marshalled, tagged with the compiling interpreter's bytecode magic: an
agent on another Python version refuses it with a clear error instead of running bytecode
it cannot read. Shipped into every sandbox: standard library only.
"""

from __future__ import annotations

import base64
import importlib.util
import marshal
import types

TYPE_CHECKING = False   # typing costs ~2 ms at every sandbox start: for mypy only
if TYPE_CHECKING:
    from typing import Any

MAGIC = importlib.util.MAGIC_NUMBER.hex()


def pack(code: types.CodeType) -> dict[str, str]:
    """The ``exec`` frame's ``code`` and ``compiled`` fields for a compiled cell."""
    return {"code": base64.b64encode(marshal.dumps(code)).decode("ascii"), "compiled": MAGIC}


def compile_source(source: str) -> types.CodeType:
    """A cell's source compiled as the agent runs it: the one call, so a cell the agent
    compiled ahead (``init``'s ``prepare``) is the very code it would have compiled."""
    return compile(source, "<cell>", "exec")


def load(frame: dict[str, Any]) -> types.CodeType:
    """The code object an ``exec`` frame asks the agent to run.

    Raises:
        SyntaxError: the source does not compile (reported at the user's line).
        ValueError: compiled code from another Python version.
        TypeError: the compiled cell is not a code object.
    """
    compiled = frame.get("compiled")
    if compiled is None:
        return compile_source(frame["code"])
    if compiled != MAGIC:
        raise ValueError(f"the host compiled this cell for bytecode {compiled}, this sandbox's "
                         f"Python reads {MAGIC}: run the same Python version on both sides")
    code = marshal.loads(base64.b64decode(frame["code"]))  # noqa: S302 - from the host
    if not isinstance(code, types.CodeType):
        raise TypeError("the host sent a compiled cell that is not a code object")
    return code
