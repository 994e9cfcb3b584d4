"""Sets in DSPy variables cross as sorted lists (in the order they iterate when their items
do not sort), as DSPy's ``PythonInterpreter`` sends them: a set's own order changes with the
hash seed, and code that reads ``tags[0]`` should see the same value every run."""

from __future__ import annotations

from typing import Any


def with_sets_sorted(value: Any) -> Any:
    """``value`` with every set, at any depth in dicts, lists and tuples, a sorted list."""
    if isinstance(value, (set, frozenset)):
        items = [with_sets_sorted(item) for item in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(value, dict):
        return {key: with_sets_sorted(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [with_sets_sorted(item) for item in value]
    return value
