"""The parameters an LM call runs with: the caller's, the policy's defaults, the policy's cap.

Model code may pass ``system``, ``max_tokens``, ``temperature`` and ``stop`` to
``llm_query`` (``rlm_query``: all but ``system``); the policy's ``lm_calls`` section gives
per function a ``max_tokens`` cap, default ``temperature`` and ``stop``, and a system prompt
that comes first. The host turns a call's arguments into its effective parameters
*before* the policy decides, so the decision, the audit record and the request the API
receives all see the same values. The caller's values are hostile input: checked here,
and a bad one is the call's ``TypeError`` or ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from rlmbox.lm.base import CallOptions, LMRequest
from rlmbox.policies.model import (
    MAX_STOP_CHARS,
    MAX_STOP_SEQUENCES,
    MAX_SYSTEM_CHARS,
    LMCallSettings,
)

#: The parameters a caller may pass, with None meaning "unset"; ``system`` only where the
#: function has that parameter.
LM_PARAMETERS = ("system", "max_tokens", "temperature", "stop")
_UNSET = LMCallSettings()


def effective_args(settings: LMCallSettings | None, bound: Mapping[str, Any]
                   ) -> tuple[dict[str, Any], dict[str, int]]:
    """``bound`` with its LM parameters made effective, and what the cap cut
    (``{"max_tokens": asked}``, empty when nothing was cut)."""
    policy = settings or _UNSET
    out = dict(bound)
    if "system" in bound:
        out["system"] = _joined(policy.system, _system(bound["system"]))
    asked = _max_tokens(bound.get("max_tokens"))
    out["max_tokens"] = _capped(asked, policy.max_tokens)
    temperature = _temperature(bound.get("temperature"))
    out["temperature"] = policy.temperature if temperature is None else temperature
    stop = _stop(bound.get("stop"))
    out["stop"] = list(policy.stop or ()) if stop is None else stop
    cut = {"max_tokens": asked} if asked is not None and asked != out["max_tokens"] else {}
    return out, cut


def call_options(args: Mapping[str, Any]) -> CallOptions:
    """The :class:`CallOptions` of effective arguments (from :func:`effective_args`)."""
    return CallOptions(max_tokens=args.get("max_tokens"), temperature=args.get("temperature"),
                       stop=tuple(args.get("stop") or ()))


def root_request(settings: LMCallSettings | None, request: LMRequest
                 ) -> tuple[LMRequest, dict[str, int]]:
    """A root-loop request under ``root_lm``'s settings: its options capped and defaulted,
    the policy's system prompt before the loop's; and what the cap cut."""
    policy = settings or _UNSET
    asked = request.options.max_tokens
    capped = request.options.capped(policy.max_tokens)
    capped = replace(capped, stop=capped.stop or tuple(policy.stop or ()),
                     temperature=policy.temperature if capped.temperature is None
                     else capped.temperature)
    effective = LMRequest(request.turns, system=_joined(policy.system, request.system),
                          options=capped, cache_prefix=request.cache_prefix)
    cut = {"max_tokens": asked} if asked is not None and asked != capped.max_tokens else {}
    return effective, cut


def options_summary(request: LMRequest) -> dict[str, Any]:
    """A root-loop request's parameters as its audit record shows them."""
    options = request.options
    return {"max_tokens": options.max_tokens, "temperature": options.temperature,
            "stop": {"items": len(options.stop)},
            "system": {"chars": len(request.system or "")}}


def _joined(first: str | None, second: str | None) -> str | None:
    parts = [part for part in (first, second) if part]
    return "\n\n".join(parts) if parts else None


def _capped(asked: int | None, cap: int | None) -> int | None:
    if cap is None:
        return asked
    return cap if asked is None else min(asked, cap)


def _system(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"system must be a str, not {type(value).__name__}")
    if len(value) > MAX_SYSTEM_CHARS:
        raise ValueError(f"system is longer than {MAX_SYSTEM_CHARS} characters")
    return value


def _max_tokens(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"max_tokens must be an int, not {type(value).__name__}")
    if value < 1:
        raise ValueError("max_tokens must be at least 1")
    return value


def _temperature(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"temperature must be a number, not {type(value).__name__}")
    if not math.isfinite(value) or not 0 <= value <= 2:
        raise ValueError("temperature must be between 0 and 2")
    return float(value)


def _stop(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TypeError("stop must be a list of str")
    if len(value) > MAX_STOP_SEQUENCES:
        raise ValueError(f"stop takes at most {MAX_STOP_SEQUENCES} sequences")
    if any(not item or len(item) > MAX_STOP_CHARS for item in value):
        raise ValueError(f"each stop sequence must be 1 to {MAX_STOP_CHARS} characters")
    return list(value)
