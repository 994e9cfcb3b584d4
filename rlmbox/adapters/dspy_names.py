"""The names a DSPy interpreter accepts for tools, output fields and variables.

DSPy's interpreters check them when built and again at every ``execute`` (``tools`` is a
mutable dict DSPy fills later): identifiers, no keywords, nothing the sandbox itself defines,
output fields unique and JSON, variables distinct from the tools. rlmbox's sandbox defines a
few more names than DSPy's (``FINAL``, which ``SUBMIT`` calls, and the names the agent
restores before every cell), so those are refused too: a tool by that name would be
silently replaced, a variable would break ``SUBMIT``.
"""

from __future__ import annotations

import json
import keyword
from collections.abc import Iterable
from typing import Any

# DSPy's own reserved names, then the ones rlmbox's agent and this adapter define
RESERVED = frozenset({"SUBMIT", "__builtins__", "FINAL", "FINAL_VAR", "SHOW_VARS",
                      "HostCallError", "PolicyDenied", "BudgetExceeded"})
_ADAPTER_PREFIX = "_rlmbox"


def _usable(name: object) -> bool:
    return (isinstance(name, str) and name.isidentifier() and not keyword.iskeyword(name)
            and name not in RESERVED and not name.startswith(_ADAPTER_PREFIX))


def check_tool_names(names: Iterable[object]) -> None:
    """Raises ``ValueError`` naming every tool name the sandbox cannot bind."""
    invalid = [name for name in names if not _usable(name)]
    if invalid:
        raise ValueError("tool names must be non-reserved Python identifiers; "
                         f"invalid names: {invalid!r}")


def output_field_names(fields: list[dict[str, Any]] | None) -> list[str] | None:
    """The output fields' names, in order, or ``ValueError`` when one is not a non-keyword
    identifier, two are equal, or the fields are not JSON (they are sent as JSON)."""
    if fields is None:
        return None
    names = [field.get("name") if isinstance(field, dict) else None for field in fields]
    if not all(_usable(name) for name in names):
        raise ValueError("output field names must be non-reserved Python identifiers; "
                         f"got {names!r}")
    if len(names) != len(set(names)):
        raise ValueError(f"output field names must be unique; got {names!r}")
    try:
        json.dumps(fields, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"output fields must be JSON-compatible: {exc}") from exc
    return [str(name) for name in names]


def invalid_variable_names(variables: Iterable[Any], tools: Iterable[str]) -> list[Any]:
    """The variable names that are not usable identifiers or that would shadow a tool."""
    taken = set(tools)
    return [name for name in variables if not _usable(name) or name in taken]
