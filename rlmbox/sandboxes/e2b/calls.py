"""The one place the e2b backend meets the E2B SDK's errors: translated, and retried.

The SDK's exceptions (``e2b.exceptions``, connectrpc's and the HTTP transport's) never
leave this module: a create that fails becomes ``SandboxUnavailable`` naming the cause
(auth, quota, template, the service), a sandbox that went away becomes ``SandboxCrashed``.
Transient failures (429, 5xx, a connection that failed) are retried with bounded
exponential backoff and full jitter; nothing else is.
"""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from rlmbox.errors import SandboxUnavailable

T = TypeVar("T")


class Cause(enum.StrEnum):
    """Why an E2B call failed, as far as the SDK's answer tells."""

    AUTH = "auth"
    QUOTA = "quota"
    TEMPLATE = "template"
    NOT_FOUND = "not found"
    SERVICE = "service"          # 5xx or a failed connection: transient
    OTHER = "other"


TRANSIENT = frozenset({Cause.QUOTA, Cause.SERVICE})
_ADVICE = {
    Cause.AUTH: "E2B refused the API key (E2B_API_KEY)",
    Cause.QUOTA: "E2B's rate or concurrent-sandbox limit was reached (quota)",
    Cause.TEMPLATE: "the template does not exist or cannot start (isolation.e2b.template)",
    Cause.NOT_FOUND: "the sandbox is gone",
    Cause.SERVICE: "the E2B service failed or could not be reached",
    Cause.OTHER: "the E2B call failed",
}


def classify(exc: BaseException, *, creating: bool = False) -> Cause:
    """The cause of an SDK exception (by class name and HTTP status, so that this module
    does not import the SDK at import time)."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    status = getattr(exc, "status_code", None)
    if "AuthenticationException" in names or status in (401, 403):
        return Cause.AUTH
    if "RateLimitException" in names or status == 429:
        return Cause.QUOTA
    if "TemplateException" in names or (creating and status in (400, 404)):
        return Cause.TEMPLATE
    if names & {"SandboxNotFoundException", "NotFoundException", "SandboxNotRunningException"}:
        return Cause.NOT_FOUND
    if (names & {"ServiceBusyException", "TimeoutException", "SandboxUnreachableException",
                 "ConnectError", "ConnectionError", "OSError", "ReadError", "WriteError",
                 "StreamError", "TransportError"}
            or (isinstance(status, int) and status >= 500)):
        return Cause.SERVICE
    return Cause.OTHER


def describe(exc: BaseException, cause: Cause) -> str:
    return f"{_ADVICE[cause]}: {type(exc).__name__}: {str(exc)[:300]}"


@dataclass(frozen=True)
class Backoff:
    """Bounded retries: ``attempts`` tries in all, waits doubling from ``base_s`` up to
    ``cap_s``, each a random fraction of that (full jitter), so a fleet does not retry in
    step."""

    attempts: int = 4
    base_s: float = 0.2
    cap_s: float = 2.0

    def wait(self, attempt: int) -> float:
        return random.uniform(0, min(self.cap_s, self.base_s * 2 ** attempt))  # noqa: S311


DEFAULT_BACKOFF = Backoff()


def call(action: str, fn: Callable[[], T], *, backoff: Backoff = DEFAULT_BACKOFF,
         creating: bool = False, sleep: Callable[[float], None] = time.sleep) -> T:
    """Runs an SDK call, retrying transient failures; raises ``SandboxUnavailable`` naming
    the cause when it cannot succeed."""
    for attempt in range(backoff.attempts):
        try:
            return fn()
        except Exception as exc:
            cause = classify(exc, creating=creating)
            if cause not in TRANSIENT or attempt == backoff.attempts - 1:
                raise SandboxUnavailable(
                    f"{action}: {describe(exc, cause)}"
                    + (f" (after {attempt + 1} attempts)" if attempt else "")) from exc
            sleep(backoff.wait(attempt))
    raise SandboxUnavailable(f"{action}: no attempt was made")   # attempts < 1
