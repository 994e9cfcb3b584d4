"""The writer's orjson path writes exactly the canonical bytes the verifier checks against."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlmbox.audit.canonical import canonical_bytes, normalize
from rlmbox.audit.fast_canonical import fast_canonical_bytes
from rlmbox.audit.log import AuditLog
from rlmbox.audit.verify import verify_log
from rlmbox.errors import AuditRecordInvalid

_floats = st.floats(allow_nan=False, allow_infinity=False)
_scalars = st.none() | st.booleans() | st.integers() | _floats | st.text()
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20)


def _outcome(encode: Any, value: Any) -> bytes | str:
    try:
        return bytes(encode(value))
    except AuditRecordInvalid:
        return "refused"


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.text(), _values, max_size=8))
def test_generated_records_encode_to_the_canonical_bytes(record: dict[str, Any]) -> None:
    """Any keys (all of Unicode, lone surrogates included), integers of any size, any floats."""
    normalized = normalize(record)
    assert _outcome(fast_canonical_bytes, normalized) == _outcome(canonical_bytes, normalized)


def test_floats_of_every_decimal_exponent_encode_to_the_canonical_bytes() -> None:
    """Python and orjson spell some of these differently; the fast path must not."""
    mantissas = (1.0, 1.5, 2.220446049250313, 5.0, 9.999999999999999, 1.2345678901234567)
    floats = [m * 10.0 ** e for e in range(-325, 309) for m in mantissas
              if math.isfinite(m * 10.0 ** e)]
    floats += [struct.unpack("<d", struct.pack("<Q", bits))[0]
               for bits in range(0, 2**64, 2**64 // 20_011)]
    for value in (f for f in floats if math.isfinite(f)):
        for signed in (value, -value):
            record = {"v": signed, "l": [signed]}
            assert fast_canonical_bytes(record) == canonical_bytes(record), repr(signed)


def test_the_fast_path_is_taken_for_an_ordinary_record() -> None:
    """Not only correct but used: a typical host.call record is orjson's own output."""
    import orjson

    record = normalize({"event": "host.call", "cost_usd": 0.0012, "latency_ms": 431.5,
                        "budget": {"before": {"calls": 3}}, "rule_ids": ["allow"], "n": None})
    assert fast_canonical_bytes(record) == orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


def test_a_log_with_awkward_values_verifies(logdir: Path) -> None:
    """What the writer wrote through either path is what the verifier re-encodes."""
    awkward: dict[str, Any] = {"tiny": 1e-05, "tinier": -2.5e-09, "huge": 1e300, "big_int": 2**70,
               "dash": "code-exec e-mail", "zeros": "0.00001", "ctl": "\x00\x1f\x7f\u2028",
               "astral": "\U0001f600", "keys": {"\uffff": 1, "\U00010000": 2, "é": 3}}
    with AuditLog(logdir) as log:
        for i in range(3):
            written = log.append("probe", i=i, **awkward)
    report = verify_log(logdir)
    assert report.ok, report
    assert json.loads(log.path.read_bytes().splitlines()[-1])["tinier"] == written["tinier"]


def test_a_record_with_a_lone_surrogate_is_refused_on_both_paths() -> None:
    with pytest.raises(AuditRecordInvalid):
        fast_canonical_bytes({"k": "\ud800"})
