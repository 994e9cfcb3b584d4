"""Canonical JSON and record hashing: the bytes the hash chain is computed over.

Canonical form: ``json.dumps`` with sorted keys, ``(",", ":")`` separators, UTF-8 (no ASCII
escaping), NaN and infinities refused. The verifier re-serialises every parsed record and
compares bytes, so any non-canonical edit (whitespace, key order, duplicate keys) is caught.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import time
from typing import Any

from rlmbox.errors import AuditRecordInvalid

#: ``prev`` of the very first record of a log (and of the first checkpoint).
GENESIS = "0" * 64

_JSON_SCALARS = (str, int, float, bool, type(None))


def canonical_bytes(obj: Any) -> bytes:
    """Serialise ``obj`` canonically; raises ``AuditRecordInvalid`` for non-JSON values."""
    try:
        text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)
        return text.encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError, RecursionError) as exc:
        raise AuditRecordInvalid(f"event is not canonical JSON: {exc}") from exc


def record_digest(line: bytes) -> str:
    """SHA-256 hex of one record's canonical bytes (without the newline)."""
    return hashlib.sha256(line).hexdigest()


def normalize(value: Any, *, _depth: int = 0) -> Any:
    """Return ``value`` in the JSON data model (tuples become lists), or raise.

    Done before a sequence number is taken, so a bad attribute never burns a ``seq``.
    """
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if _depth > 64:
        raise AuditRecordInvalid("event nests deeper than 64 levels")
    if kind is dict:
        return _normalize_dict(value, _depth)
    if kind is list:   # before the isinstance chain below: three checks it need not pay
        return [item if type(item) is str else normalize(item, _depth=_depth + 1)
                for item in value]
    if isinstance(value, _JSON_SCALARS):
        if isinstance(value, float) and not math.isfinite(value):
            raise AuditRecordInvalid(f"non-finite number {value!r} cannot be recorded")
        return value
    if isinstance(value, dict):
        return _normalize_dict(value, _depth)
    if isinstance(value, list | tuple):
        return [item if type(item) is str else normalize(item, _depth=_depth + 1)
                for item in value]
    raise AuditRecordInvalid(f"value of type {type(value).__name__} is not JSON-able")


def normalize_fresh(record: dict[str, Any]) -> dict[str, Any]:
    """``normalize(record)`` for a dict built for this record alone: its top level is
    checked in place rather than copied, scalars kept as they are (the costly part of
    appending was copying them). Lists and dicts in it go through ``normalize``, which
    copies them: they are the caller's, and its thread could change them later.
    """
    for key, value in record.items():
        if type(key) is not str and not isinstance(key, str):
            raise AuditRecordInvalid(f"attribute key {key!r} is not a string")
        kind = type(value)
        if kind is str or kind is int or kind is bool or value is None or (
                kind is float and value - value == 0.0):   # False for NaN and infinities
            continue
        record[key] = normalize(value, _depth=1)   # a key's value replaced: no resize
    return record


def _normalize_dict(value: dict[Any, Any], depth: int) -> dict[str, Any]:
    """``normalize`` for a dict, with the common scalar values copied inline (the hot path)."""
    out: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise AuditRecordInvalid(f"attribute key {key!r} is not a string")
        kind = type(item)
        if kind is str or kind is int or kind is bool or item is None:
            out[key] = item
        elif depth < 64 and (kind is dict or (kind is float and item - item == 0.0)):
            # normalize's own steps for a dict and a finite float, one call fewer (x - x
            # is 0.0 for a finite float, NaN for NaN and the infinities)
            out[key] = _normalize_dict(item, depth + 1) if kind is dict else item
        else:
            out[key] = normalize(item, _depth=depth + 1)
    return out


def rfc3339_now() -> str:
    """Current UTC time as RFC 3339 with microseconds, e.g. ``2025-01-02T03:04:05.000006Z``."""
    seconds, nanoseconds = divmod(time.time_ns(), 1_000_000_000)
    return f"{_utc_second(seconds)}.{nanoseconds // 1000:06d}Z"


@functools.lru_cache(maxsize=4)
def _utc_second(seconds: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` of a Unix second; cached, as many records share one second."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
