"""``normalize`` against its definition, written plainly: the fast paths change no outcome."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlmbox.audit.canonical import normalize
from rlmbox.errors import AuditRecordInvalid

from .test_plain_records import _odd, _outcome, _values


def _defined(value: Any, depth: int = 0) -> Any:
    """Exact strings, integers, booleans and None as they are at any depth; anything else
    refused past 64 levels; finite floats (and str, int, float subclasses) kept; dicts with
    string keys and lists copied, tuples made lists; everything else refused."""
    if type(value) in (str, int, bool) or value is None:
        return value
    if depth > 64:
        raise AuditRecordInvalid("too deep")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise AuditRecordInvalid("not finite")
        return value
    if isinstance(value, str | int):
        return value
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise AuditRecordInvalid("key")
        return {key: _defined(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_defined(item, depth + 1) for item in value]
    raise AuditRecordInvalid("type")


@settings(max_examples=1000, deadline=None)
@given(_values | _odd | st.lists(_values | _odd, max_size=3)
       | st.dictionaries(st.text(), _values | _odd, max_size=3))
def test_normalize_gives_what_its_definition_gives(value: Any) -> None:
    assert _outcome(normalize, value) == _outcome(_defined, value)


def _nest(depth: int, kinds: str, leaf: Any) -> Any:
    value = leaf
    for level in range(depth):
        value = {"k": value} if kinds[level % len(kinds)] == "d" else [value]
    return value


@pytest.mark.parametrize("leaf", ["text", 1.5, (1,), float("nan")])
@pytest.mark.parametrize("kinds", ["d", "l", "dl", "ld"])
@pytest.mark.parametrize("depth", [62, 63, 64, 65, 66])
def test_the_depth_limit_is_where_the_definition_puts_it(depth: int, kinds: str,
                                                         leaf: Any) -> None:
    value = _nest(depth, kinds, leaf)
    assert _outcome(normalize, value) == _outcome(_defined, value)
