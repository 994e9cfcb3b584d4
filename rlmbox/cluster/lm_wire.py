"""An LM request as plain data, so the request the node decided reaches the driver's
provider whole: its turns, its system prompt, the parameters the policy made effective
(``max_tokens`` capped, ``temperature``, ``stop``...) and its cache marking.

It crosses as JSON-able values only (as every call's arguments do, ``cluster/cell_wire.py``),
never as a pickled object; the driver rebuilds the request, which checks it again.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from rlmbox.errors import LMError
from rlmbox.lm.base import CallOptions, Completion, LMRequest, Turn


def request_data(request: LMRequest) -> dict[str, Any]:
    """``request`` as plain data (what a node sends the driver)."""
    options = dataclasses.asdict(request.options)
    options["stop"] = list(request.options.stop)
    return {"turns": [[turn.role, turn.text] for turn in request.turns],
            "system": request.system, "options": options,
            "cache_prefix": request.cache_prefix}


def request_from_data(data: dict[str, Any]) -> LMRequest:
    """The request :func:`request_data` describes (what the driver's provider gets).

    Raises:
        LMError: the data does not describe a request.
    """
    try:
        options = dict(data["options"])
        options["stop"] = tuple(options.get("stop") or ())
        return LMRequest(tuple(Turn(role, text) for role, text in data["turns"]),
                         system=data["system"], options=CallOptions(**options),
                         cache_prefix=bool(data["cache_prefix"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise LMError(f"not an LM request: {exc}") from exc


def completion_data(completion: Completion) -> dict[str, Any]:
    """A completion as plain data (what the driver answers)."""
    return dataclasses.asdict(completion)


def completion_from_data(data: dict[str, Any]) -> Completion:
    """The completion :func:`completion_data` describes (what the node meters)."""
    return Completion(**data)
