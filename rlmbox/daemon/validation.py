"""Turning raw request bytes into a validated request model, or a DaemonError (400).

This is the one place untrusted request bodies are parsed; ``fuzz/fuzz_daemon_request.py``
drives it. Whatever the bytes, it returns a model or raises DaemonError, nothing else.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from rlmbox.daemon.wire import INVALID_REQUEST
from rlmbox.errors import DaemonError

M = TypeVar("M", bound=BaseModel)

# A JSON escape of a UTF-16 surrogate: the only way valid UTF-8 JSON holds one.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(data: Any) -> bool:
    """Whether any string or key in ``data`` cannot be encoded as UTF-8 (a lone surrogate,
    valid JSON that no file, frame or audit record can hold)."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False, include_input=False)[:10]:
        where = ".".join(str(part) for part in error["loc"]) or "body"
        problems.append(f"{where}: {error['msg']}")
    return "; ".join(problems)


def parse_body(model: type[M], raw: bytes) -> M:
    """``raw`` as ``model``; DaemonError(400, InvalidRequest) saying what is wrong."""
    try:   # strict UTF-8 first: json.loads alone lets encoded surrogates through
        data: Any = json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except (ValueError, RecursionError) as exc:   # UnicodeDecodeError is a ValueError
        raise DaemonError(f"the body is not valid JSON: {exc}"[:500], status=400,
                          type=INVALID_REQUEST) from None
    if _SURROGATE_ESCAPE.search(raw) and _has_lone_surrogate(data):
        raise DaemonError("the body holds a string that is not valid Unicode (a lone "
                          "surrogate escape such as \\ud800)", status=400,
                          type=INVALID_REQUEST)
    if not isinstance(data, dict):
        raise DaemonError("the body must be a JSON object", status=400, type=INVALID_REQUEST)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise DaemonError(f"invalid request: {_describe(exc)}", status=400,
                          type=INVALID_REQUEST) from None
    except (RecursionError, ValueError) as exc:   # absurd nesting deep inside ``context``
        raise DaemonError(f"invalid request: {type(exc).__name__}", status=400,
                          type=INVALID_REQUEST) from None


def query_int(query: Any, name: str, default: int, *, low: int, high: int) -> int:
    """An integer query parameter within [low, high]."""
    text = query.get(name)
    if text is None:
        return default
    if not isinstance(text, str) or not text.isascii() or not text.isdigit() or len(text) > 18:
        raise DaemonError(f"query parameter {name} must be a non-negative integer",
                          status=400, type=INVALID_REQUEST)
    value = int(text)
    if not low <= value <= high:
        raise DaemonError(f"query parameter {name} must be between {low} and {high}",
                          status=400, type=INVALID_REQUEST)
    return value


def refuse_unknown_query(query: Any, known: set[str]) -> None:
    """A 400 naming every query parameter not in ``known`` (a typo is not ignored), or any
    given more than once (which one would count is not the caller's guess)."""
    unknown = set(query) - known
    if unknown:
        raise DaemonError(f"unknown query parameters: {', '.join(sorted(unknown))}",
                          status=400, type=INVALID_REQUEST)
    repeated = sorted(name for name in set(query) if len(query.getall(name)) > 1)
    if repeated:
        raise DaemonError(f"query parameters given more than once: {', '.join(repeated)}",
                          status=400, type=INVALID_REQUEST)
