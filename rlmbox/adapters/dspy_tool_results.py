"""How a DSPy tool's result crosses into the sandbox: converted as DSPy's ``PythonInterpreter``
converts it (pydantic models, dataclasses and namedtuples as dicts, sets and the like as
pydantic serializes them into a JSON body), awaited first when the tool is ``async``, and sent
as its text when it is still not strict JSON (NaN, infinities, arbitrary objects).

The converted value is rebuilt from its JSON text, so the frame rlmbox sends to the sandbox
can always be encoded: a tool can never make the host's reply look like the sandbox's fault.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import threading
from collections.abc import Awaitable
from typing import Any

import pydantic
from pydantic_core import PydanticSerializationError, to_jsonable_python

from rlmbox.errors import ToolError


class ToolResultError(ToolError):
    """A tool's result has no JSON form and no text: it cannot cross into the sandbox. A
    ``ToolError``, so the model reads this message (which names the tool), not only its
    type."""


def awaited(result: Any) -> Any:
    """``result``, or what it resolves to when an ``async`` tool returned an awaitable.

    A thread that already runs an event loop cannot block in another, so the awaitable then
    runs on a thread of its own.
    """
    if not inspect.isawaitable(result):
        return result
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_wait(result))
    outcome: list[Any] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(asyncio.run(_wait(result)))
        except BaseException as exc:  # handed back to the caller's thread below
            failure.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
    return outcome[0]


async def _wait(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def crossing_value(tool: str, result: Any) -> Any:
    """The JSON value the sandbox receives for ``result``.

    Raises:
        ToolResultError: the value has neither a JSON form nor a text (its ``__str__``
            raised, or a pydantic model refused to serialize); the message names ``tool``.
    """
    try:
        converted = _jsonable(result)
        try:
            return json.loads(json.dumps(converted, allow_nan=False))
        except (TypeError, ValueError, RecursionError):
            return str(converted)
    except Exception as exc:   # any failure of the tool's own types: reported, not fatal
        raise ToolResultError(f"the result of tool {tool!r} ({type(result).__name__}) "
                              f"cannot cross into the sandbox: {type(exc).__name__}: {exc}"
                              ) from exc


def _jsonable(value: Any) -> Any:
    """Structured values as plain containers, recursively; others left for ``json``."""
    plain = _plain(value)
    if isinstance(plain, dict):
        return {key: _jsonable(item) for key, item in plain.items()}
    if isinstance(plain, (list, tuple)):
        return [_jsonable(item) for item in plain]
    if plain is None or isinstance(plain, (str, int, float, bool)):
        return plain
    try:
        return to_jsonable_python(plain)
    except PydanticSerializationError:
        return plain


def _plain(value: Any) -> Any:
    """A pydantic model, dataclass or namedtuple as the dict DSPy sends; others unchanged."""
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        try:
            return dataclasses.asdict(value)
        except Exception:   # a field that cannot be copied: DSPy then sends the text
            return value
    if isinstance(value, tuple) and hasattr(value, "_fields") and hasattr(value, "_asdict"):
        return value._asdict()
    return value
