"""An event recorded without ``normalize``'s copy is exactly what ``normalize`` would make."""

from __future__ import annotations

import enum
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlmbox.audit.canonical import is_plain, normalize
from rlmbox.audit.log import AuditLog
from rlmbox.errors import AuditRecordInvalid

_scalars = (st.none() | st.booleans() | st.integers() | st.text()
            | st.floats(allow_nan=True, allow_infinity=True))
_values = st.recursive(
    _scalars,
    lambda inner: (st.lists(inner, max_size=4) | st.tuples(inner, inner)
                   | st.dictionaries(st.text() | st.integers(), inner, max_size=4)),
    max_leaves=20)


def _typed(value: Any) -> Any:
    """``value`` with each node's exact type beside it, so ``1 == True`` and ``[] == ()``
    cannot pass for equal."""
    if isinstance(value, dict):
        return (type(value), [(_typed(k), _typed(v)) for k, v in value.items()])
    if isinstance(value, list | tuple):
        return (type(value), [_typed(item) for item in value])
    return (type(value), value)


@settings(max_examples=500, deadline=None)
@given(_values)
def test_a_plain_value_is_what_normalize_returns(value: Any) -> None:
    """NaN, infinities, tuples and integer keys are never plain; the rest equals its copy."""
    if not is_plain(value):
        return
    assert _typed(normalize(value)) == _typed(value)


class _Colour(enum.Enum):
    RED = "red"


class _Text(str):
    pass


@pytest.mark.parametrize("value", [
    float("nan"), float("inf"), -float("inf"), (1, 2), {1: "a"}, {"a": {"b": [float("nan")]}},
    _Colour.RED, uuid.uuid4(), _Text("x"), OrderedDict(a=1), b"bytes", {"a": object()},
])
def test_values_normalize_must_see_are_not_plain(value: Any) -> None:
    assert not is_plain(value)


def test_nesting_past_the_limit_is_not_plain_and_is_refused(tmp_path: Path) -> None:
    deep: Any = "leaf"
    for _ in range(70):
        deep = {"d": deep}
    assert not is_plain(deep)
    with AuditLog(tmp_path / "audit") as log, pytest.raises(AuditRecordInvalid):
        log.append("x.deep", nested=deep)


@pytest.mark.parametrize("attribute", [float("nan"), _Colour.RED, uuid.uuid4(), {3: "int key"}])
def test_an_unrecordable_attribute_is_still_refused(tmp_path: Path, attribute: Any) -> None:
    with AuditLog(tmp_path / "audit") as log, pytest.raises(AuditRecordInvalid):
        log.append("x.bad", value=attribute)
