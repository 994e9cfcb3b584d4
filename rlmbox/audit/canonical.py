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
from collections.abc import Iterable
from typing import Any, cast

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
    if isinstance(value, _JSON_SCALARS):
        if isinstance(value, float) and not math.isfinite(value):
            raise AuditRecordInvalid(f"non-finite number {value!r} cannot be recorded")
        return value
    if isinstance(value, dict):
        return _normalize_dict(value, _depth)
    if isinstance(value, list | tuple):
        return [normalize(item, _depth=_depth + 1) for item in value]
    raise AuditRecordInvalid(f"value of type {type(value).__name__} is not JSON-able")


def is_plain(value: Any, _depth: int = 0) -> bool:
    """True if ``normalize(value)`` would equal ``value`` in type as well as value: built-in
    dicts (string keys), lists, strings, integers, booleans, ``None`` and finite floats,
    nested at most 64 levels. Such a value is recorded as it is, without the copy
    ``normalize`` makes (the costly part of appending); anything else goes to ``normalize``.
    """
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if kind is float:
        return bool(value - value == 0.0)   # False for NaN and the infinities
    items = _plain_container_items(value, kind) if _depth <= 64 else None
    if items is None:
        return False
    for item in items:   # the scalar test inlined: the hot path
        item_kind = type(item)
        if item_kind is str or item_kind is int or item_kind is bool or item is None:
            continue
        if not is_plain(item, _depth + 1):
            return False
    return True


def _plain_container_items(value: Any, kind: type) -> Iterable[Any] | None:
    """The items of a built-in list, or the values of a dict whose keys are all strings."""
    if kind is list:
        return cast("list[Any]", value)
    if kind is not dict:
        return None
    for key in value:
        if type(key) is not str:
            return None
    return cast("dict[str, Any]", value).values()


def _normalize_dict(value: dict[Any, Any], depth: int) -> dict[str, Any]:
    """``normalize`` for a dict, with the common scalar values copied inline (the hot path)."""
    out: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise AuditRecordInvalid(f"attribute key {key!r} is not a string")
        kind = type(item)
        if kind is str or kind is int or kind is bool or item is None:
            out[key] = item
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
