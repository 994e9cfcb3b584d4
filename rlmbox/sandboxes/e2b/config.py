"""Where the e2b backend's credentials and endpoints come from: the host's environment.

Never from a policy file or a daemon client (neither has a field for them), and never
into a sandbox (the agent starts with an empty environment). ``E2B_API_KEY`` is required;
``E2B_DOMAIN`` selects a self-hosted E2B; ``E2B_API_URL`` and ``E2B_SANDBOX_URL`` point
the SDK at explicit endpoints (a self-hosted cluster behind one address, or the test
double).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rlmbox.errors import SandboxUnavailable

REQUEST_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class E2BConnection:
    """The host's E2B account and endpoints; ``repr`` never shows the key."""

    api_key: str = field(repr=False)
    domain: str | None = None
    api_url: str | None = None
    sandbox_url: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> E2BConnection:
        """Reads the host's environment; refuses when no API key is set."""
        env = os.environ if environ is None else environ
        key = env.get("E2B_API_KEY", "").strip()
        if not key:
            raise SandboxUnavailable(
                "E2B_API_KEY is not set: the e2b backend needs an E2B API key in the "
                "environment of the host process (docs/backends-e2b.md)")
        return cls(key, env.get("E2B_DOMAIN") or None, env.get("E2B_API_URL") or None,
                   env.get("E2B_SANDBOX_URL") or None)

    def sdk_params(self) -> dict[str, Any]:
        """Keyword arguments for the SDK's calls: the account, the endpoints, and no SDK
        retries (the backend retries itself, bounded, see ``calls.py``)."""
        params: dict[str, Any] = {"api_key": self.api_key,
                                  "request_timeout": REQUEST_TIMEOUT_S, "retries": 0}
        for name in ("domain", "api_url", "sandbox_url"):
            value = getattr(self, name)
            if value is not None:
                params[name] = value
        return params

    @property
    def where(self) -> str:
        """The control plane's address, for messages."""
        return self.api_url or f"https://api.{self.domain or 'e2b.app'}"
