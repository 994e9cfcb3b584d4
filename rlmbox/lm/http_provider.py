"""What the SDK-based providers share: keys kept out of text, SDK errors translated, cost.

Both hosted providers hold an SDK client over a :mod:`bounded_http` client, a pricer and
their keys. A completion's text goes into the sandbox, so it is scrubbed of the keys; the
SDKs' exceptions carry the request (headers, key included), so they leave rlmbox as
:class:`~rlmbox.errors.LMRequestFailed` with a scrubbed message, never chained. Kept apart
from :mod:`hosted` because it imports httpx2, which ``import rlmbox`` must not pay for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import httpx2

from rlmbox.errors import LMError, LMRequestFailed
from rlmbox.lm.base import Completion, TextSink
from rlmbox.lm.bounded_http import RETRY_COUNT_HEADER, BoundedTransport
from rlmbox.lm.prices import Pricer

MAX_ERROR_TEXT = 500


@dataclass(frozen=True)
class SdkErrors:
    """One SDK's exception classes, as the translation needs them."""

    base: type[Exception]
    status: type[Exception]     # has ``status_code`` and ``response``
    timeout: type[Exception]
    connection: type[Exception]
    too_large: type[Exception]  # rlmbox's own, raised by the transport


class HttpProvider:
    """Base of :class:`AnthropicLM` and :class:`OpenAICompatibleLM`; subclasses set
    ``model``, ``secrets``, ``_pricer``, ``_transport``, ``_http`` and ``_errors``."""

    name: str
    model: str
    secrets: tuple[str, ...]
    _pricer: Pricer
    _transport: BoundedTransport
    _http: httpx2.Client
    _errors: SdkErrors

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r})"

    @property
    def retries(self) -> int:
        """Tries repeated after a retryable failure, over this provider's life."""
        return self._transport.retries

    def redact(self, text: str) -> str:
        """``text`` with every key replaced by ``[redacted]``."""
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        return text

    def scrub(self, text: str) -> str:
        """:meth:`redact`, printable and bounded in length: for error messages."""
        printable = "".join(c if c.isprintable() else "?" for c in self.redact(text))
        return printable[:MAX_ERROR_TEXT]

    def _completion(self, text: str, served: object, chosen: str, *, input_tokens: int,
                    output_tokens: int, cache_write_tokens: int = 0,
                    cache_read_tokens: int = 0) -> Completion:
        """The completion for model code: a server echoing the key must not put it in the
        sandbox; the cost is the price table's for the model that was asked for."""
        if cache_write_tokens + cache_read_tokens > input_tokens:
            raise LMError("the LM API reported more cached tokens than input tokens")
        return Completion(
            text=self.redact(text), model=served if isinstance(served, str) else chosen,
            input_tokens=input_tokens, output_tokens=output_tokens,
            cache_write_tokens=cache_write_tokens, cache_read_tokens=cache_read_tokens,
            cost_usd=self._pricer.cost(chosen, input_tokens, output_tokens,
                                       cache_write_tokens=cache_write_tokens,
                                       cache_read_tokens=cache_read_tokens))

    def _decode(self, data: bytes, status: int) -> dict[str, Any]:
        try:
            value = json.loads(data)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise LMRequestFailed(
                f"the LM API answered HTTP {status} with a body that is not a JSON object: "
                f"{self.scrub(data[:120].decode('utf-8', 'replace'))!r}", status=status)
        return value

    def _translate(self, exc: Exception) -> LMError:
        """The rlmbox error for an SDK exception (raise it ``from None``: the SDK's
        exception holds the request, its headers and so the key)."""
        attempts = _attempts(exc)
        if isinstance(exc, self._errors.too_large):
            return LMRequestFailed(self.scrub(str(exc)), status=None, attempts=attempts)
        if isinstance(exc, self._errors.timeout):
            return LMRequestFailed(f"the LM API timed out (gave up after {attempts} "
                                   "attempt(s))", status=None, attempts=attempts)
        if isinstance(exc, self._errors.connection):
            cause = type(exc.__cause__).__name__ if exc.__cause__ else "no response"
            return LMRequestFailed(f"cannot reach the LM API ({cause}; gave up after "
                                   f"{attempts} attempt(s))", status=None, attempts=attempts)
        if isinstance(exc, self._errors.status):
            status = int(getattr(exc, "status_code", 0))
            detail = _error_text(getattr(exc, "response", None))
            return LMRequestFailed(
                self.scrub(f"the LM API answered HTTP {status}: {detail}") +
                f" (after {attempts} attempt(s))", status=status, attempts=attempts)
        return LMError(f"the LM SDK failed: {type(exc).__name__}: {self.scrub(str(exc))}")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class RedactingSink:
    """Passes streamed text on with every key removed, even one split across chunks:
    it holds back the last ``len(longest key) - 1`` characters until more arrive."""

    def __init__(self, sink: TextSink, provider: HttpProvider) -> None:
        self._sink = sink
        self._provider = provider
        self._hold = max((len(s) for s in provider.secrets), default=1) - 1
        self._buffer = ""

    def __call__(self, text: str) -> None:
        self._buffer = self._provider.redact(self._buffer + text)
        cut = len(self._buffer) - self._hold
        if cut > 0:
            self._sink(self._buffer[:cut])
            self._buffer = self._buffer[cut:]

    def flush(self) -> None:
        if self._buffer:
            self._sink(self._provider.redact(self._buffer))
            self._buffer = ""


def _attempts(exc: Exception) -> int:
    """How many tries the SDK made: its retry counter on the last request, plus one."""
    request = getattr(exc, "request", None)
    if not isinstance(request, httpx2.Request):
        return 1
    value = request.headers.get(RETRY_COUNT_HEADER, "0")
    return int(value) + 1 if value.isdigit() else 1


def _error_text(response: object) -> str:
    """The provider's own error (Anthropic and OpenAI both nest it under ``error``), else
    the start of the body."""
    if not isinstance(response, httpx2.Response):
        return "(no body)"
    try:
        data = response.read()
    except httpx2.HTTPError:
        return "(body unreadable)"
    if not data:
        return "(empty body)"
    try:
        value = json.loads(data)
    except ValueError:
        value = None
    error = value.get("error") if isinstance(value, dict) else None
    if isinstance(error, dict):
        kind, message = error.get("type"), error.get("message")
        return f"{kind}: {message}" if kind else str(message)
    if isinstance(error, str):
        return error
    return repr(data[:200].decode("utf-8", "replace"))
