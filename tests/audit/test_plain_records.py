"""The top level of a record is normalized in place: the outcome is exactly ``normalize``'s."""

from __future__ import annotations

import enum
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlmbox.audit.canonical import normalize, normalize_fresh
from rlmbox.audit.log import AuditLog
from rlmbox.errors import AuditRecordInvalid

_scalars = (st.none() | st.booleans() | st.integers() | st.text()
            | st.floats(allow_nan=True, allow_infinity=True))
_values = st.recursive(
    _scalars,
    lambda inner: (st.lists(inner, max_size=4) | st.tuples(inner, inner)
                   | st.dictionaries(st.text() | st.integers(), inner, max_size=4)),
    max_leaves=20)


class _Colour(enum.Enum):
    RED = "red"


class _Text(str):
    pass


class _Number(float):
    pass


_odd = st.sampled_from([_Colour.RED, uuid.UUID(int=7), _Text("x"), _Number(1.5),
                        OrderedDict(a=1), b"bytes", object(), (1, 2)])


def _typed(value: Any) -> Any:
    """``value`` with each node's exact type beside it, so ``1 == True`` and ``[] == ()``
    cannot pass for equal."""
    if isinstance(value, dict):
        return (type(value), [(_typed(k), _typed(v)) for k, v in value.items()])
    if isinstance(value, list | tuple):
        return (type(value), [_typed(item) for item in value])
    return (type(value), value)


def _outcome(convert: Any, record: dict[Any, Any]) -> Any:
    try:
        return _typed(convert(record))
    except AuditRecordInvalid:
        return "refused"


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.text() | st.integers(), _values | _odd, max_size=8))
def test_normalizing_in_place_gives_what_normalize_returns(record: dict[Any, Any]) -> None:
    """Same values and exact types, or refused alike (NaN, infinities, integer keys,
    objects outside the JSON model), whatever the order of the attributes."""
    assert _outcome(lambda r: normalize_fresh(dict(r)), record) == _outcome(normalize, record)


def test_lists_and_dicts_are_copied_scalars_kept() -> None:
    """The caller keeps its containers (its thread may change them); the log's own top
    level is not copied."""
    shared = {"values": [1.5]}
    record = {"v": shared, "n": 1, "s": "text"}
    out = normalize_fresh(record)
    assert out is record
    assert out["v"] == shared
    assert out["v"] is not shared
    assert out["v"]["values"] is not shared["values"]


def test_nesting_past_the_limit_is_refused(tmp_path: Path) -> None:
    deep: Any = "leaf"
    for _ in range(70):
        deep = {"d": deep}
    with AuditLog(tmp_path / "audit") as log, pytest.raises(AuditRecordInvalid):
        log.append("x.deep", nested=deep)


@pytest.mark.parametrize("attribute", [float("nan"), _Colour.RED, uuid.uuid4(), {3: "int key"}])
def test_an_unrecordable_attribute_is_still_refused(tmp_path: Path, attribute: Any) -> None:
    with AuditLog(tmp_path / "audit") as log, pytest.raises(AuditRecordInvalid):
        log.append("x.bad", value=attribute)
