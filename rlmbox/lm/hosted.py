"""What the HTTP-backed providers share: finding the key, reading usage, naming secrets.

A provider's API key is a secret of the host. Providers list it in ``secrets`` so the
runtime can register it with the audit redactor (:func:`register_secrets`); it never
enters a sandbox because only completion text crosses the host-call boundary.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Protocol

from rlmbox.errors import LMError


class SecretSink(Protocol):
    """Anything that redacts registered strings (``AuditLog`` fits)."""

    def add_secret(self, value: str) -> None: ...


def register_secrets(sink: SecretSink, *providers: object) -> None:
    """Registers every secret the given providers hold (their ``secrets`` attribute)."""
    for provider in providers:
        for secret in getattr(provider, "secrets", ()):
            if isinstance(secret, str) and secret:
                sink.add_secret(secret)


def find_key(given: str | None, env_var: str) -> str | None:
    """The key passed in, else ``$env_var``, else None (a blank key counts as none)."""
    key = given if given is not None else os.environ.get(env_var)
    if key is None or not key.strip():
        return None
    if any(c in key for c in "\r\n\0"):
        raise LMError(f"the API key (from {env_var} or api_key=) holds a control character")
    return key


def require_key(given: str | None, env_var: str) -> str:
    """As :func:`find_key`, but a missing key is a clear LMError."""
    key = find_key(given, env_var)
    if key is None:
        raise LMError(f"no API key: pass api_key=... or set {env_var}")
    return key


def token_count(usage: Mapping[str, Any], *names: str) -> int:
    """The sum of the named usage fields; each must be an int >= 0 or absent (0)."""
    total = 0
    for name in names:
        value = usage.get(name, 0)
        if value is None:
            value = 0
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise LMError(f"the LM API reported usage.{name} = {value!r}, not a token count")
        total += value
    return total


def mapping(value: Any, what: str) -> Mapping[str, Any]:
    """``value`` if it is a JSON object, else an LMError naming ``what`` was missing."""
    if not isinstance(value, dict):
        raise LMError(f"the LM API response has no {what} object")
    return value
