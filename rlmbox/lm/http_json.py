"""One JSON POST to an LM provider's HTTP API: bounded in time, size and retries.

Built on httpx rather than the standard library because httpx gives, in one object, what
``urllib`` does not: a connection pool shared safely by the threads of batched
``llm_query`` calls, separate connect / read / write / pool timeouts, and a streamed body
we can stop reading at the size cap.

Every failure leaves as :class:`~rlmbox.errors.LMRequestFailed` naming the HTTP status and
the provider's own error text. The API key never appears in an error: provider text is
scrubbed of every registered secret (a buggy or hostile server may echo it back), and
our own messages never include headers. Proxies and ``.netrc`` from the environment are
ignored (``trust_env=False``): the key goes only where the caller pointed it.
"""

from __future__ import annotations

import email.utils
import ipaddress
import json
import math
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from rlmbox.errors import LMError, LMRequestFailed

RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})
MAX_ERROR_TEXT = 500
_jitter = random.SystemRandom()


@dataclass(frozen=True)
class Timeouts:
    """Seconds to connect, and to wait for each read of the response (not the whole)."""

    connect: float = 10.0
    read: float = 600.0   # a long completion is silent until it is done


@dataclass(frozen=True)
class RetryPolicy:
    """At most ``attempts`` tries; between them exponential backoff with full jitter,
    or the server's ``retry-after`` (capped at ``max_retry_after``)."""

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0

    def backoff(self, attempt: int) -> float:
        """The delay before try ``attempt + 1`` (``attempt`` counts from 1)."""
        return _jitter.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


DEFAULT_TIMEOUTS = Timeouts()
DEFAULT_RETRY = RetryPolicy()


class _Retryable(Exception):
    """One failed try that may succeed if repeated; carries what the final error says."""

    def __init__(self, message: str, status: int | None, delay: float | None) -> None:
        super().__init__(message)
        self.status = status
        self.delay = delay


class JsonClient:
    """POSTs JSON to one base URL and returns the decoded JSON object. Thread-safe.

    Args:
        base_url: where requests go, e.g. ``https://api.anthropic.com``.
        headers: sent with every request (the API key goes here).
        secrets: strings scrubbed from every error message (the API key).
        max_response_bytes: a longer response body is refused, not read.
        sleep: how to wait between tries (tests count the waits).
    """

    def __init__(self, base_url: str, *, headers: Mapping[str, str],
                 secrets: Iterable[str] = (), timeouts: Timeouts = DEFAULT_TIMEOUTS,
                 retry: RetryPolicy = DEFAULT_RETRY, max_response_bytes: int = 4 << 20,
                 max_connections: int = 32, proxy: str | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if retry.attempts < 1:
            raise ValueError("retry.attempts must be at least 1")
        self._secrets = tuple(s for s in secrets if s)
        _check_scheme(base_url, keyed=bool(self._secrets))
        self._retry = retry
        self._max_bytes = max_response_bytes
        self._sleep = sleep
        self._lock = threading.Lock()
        self.retries = 0   # how many tries were repeated, over the client's life
        self._client = httpx.Client(
            base_url=base_url, headers=dict(headers), trust_env=False, proxy=proxy,
            follow_redirects=False,   # a redirect would carry the key somewhere else
            timeout=httpx.Timeout(timeouts.read, connect=timeouts.connect, pool=timeouts.read),
            limits=httpx.Limits(max_connections=max_connections,
                                max_keepalive_connections=max_connections))

    def __repr__(self) -> str:
        return f"JsonClient({str(self._client.base_url)!r})"

    def redact(self, text: str) -> str:
        """``text`` with every secret replaced by ``[redacted]``."""
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return text

    def scrub(self, text: str) -> str:
        """:meth:`redact`, bounded in length: for error messages."""
        return self.redact(text)[:MAX_ERROR_TEXT]

    def post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """One request, repeated on 408/409/425/429/5xx/529 and connection errors."""
        payload = json.dumps(body).encode("utf-8")
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._try(path, payload, attempt)
            except _Retryable as failed:
                if attempt >= self._retry.attempts:
                    raise LMRequestFailed(
                        f"{self.scrub(str(failed))} (gave up after {attempt} attempt(s))",
                        status=failed.status, attempts=attempt) from None
                delay = failed.delay if failed.delay is not None else \
                    self._retry.backoff(attempt)
                with self._lock:
                    self.retries += 1
                self._sleep(min(delay, self._retry.max_retry_after))

    def _try(self, path: str, payload: bytes, attempt: int) -> dict[str, Any]:
        try:
            with self._client.stream("POST", path, content=payload,
                                     headers={"content-type": "application/json"}) as response:
                data = self._read(response, attempt)
                status = response.status_code
                headers = response.headers
        # httpx errors are not chained (``from None``): they carry the request, headers
        # and key included, and a traceback printer may one day show more than str()
        except httpx.TimeoutException as exc:
            raise _Retryable(f"the LM API timed out ({type(exc).__name__})", None,
                             None) from None
        except httpx.TransportError as exc:
            raise _Retryable(f"cannot reach the LM API ({type(exc).__name__}: "
                             f"{self.scrub(str(exc))})", None, None) from None
        if 200 <= status < 300:
            return self._decode(data, status, attempt)
        message = f"the LM API answered HTTP {status}: {self._error_text(data)}"
        if (status in RETRY_STATUSES or status >= 500) and not _spend_limit(data):
            raise _Retryable(message, status, _retry_after(headers))
        raise LMRequestFailed(self.scrub(message), status=status, attempts=attempt)

    def _read(self, response: httpx.Response, attempt: int) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            raise LMRequestFailed(
                f"the LM API response declares {declared} bytes, over the "
                f"{self._max_bytes}-byte cap (HTTP {response.status_code})",
                status=response.status_code, attempts=attempt)
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > self._max_bytes:
                raise LMRequestFailed(
                    f"the LM API response is over the {self._max_bytes}-byte cap "
                    f"(HTTP {response.status_code}); not read further",
                    status=response.status_code, attempts=attempt)
            chunks.append(chunk)
        return b"".join(chunks)

    def _decode(self, data: bytes, status: int, attempt: int) -> dict[str, Any]:
        try:
            value = json.loads(data)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise LMRequestFailed(
                f"the LM API answered HTTP {status} with a body that is not a JSON object: "
                f"{self.scrub(_printable(data[:120]))!r}", status=status, attempts=attempt)
        return value

    def _error_text(self, data: bytes) -> str:
        """The provider's own error message (Anthropic and OpenAI both nest it under
        ``error``), else the start of the body."""
        try:
            value = json.loads(data)
        except ValueError:
            return repr(_printable(data[:200])) if data else "(empty body)"
        if isinstance(value, dict):
            error = value.get("error")
            if isinstance(error, dict):
                kind, message = error.get("type"), error.get("message")
                return f"{kind}: {message}" if kind else str(message)
            if isinstance(error, str):
                return error
        return repr(_printable(data[:200]))

    def close(self) -> None:
        self._client.close()


def _check_scheme(base_url: str, *, keyed: bool) -> None:
    """A key travels only over https, or plain http to this machine (127.0.0.0/8, ::1)."""
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL as exc:
        raise LMError(f"not a usable LM API URL: {base_url!r}") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise LMError(f"the LM API URL must be http(s)://host...: {base_url!r}")
    if url.scheme == "http" and keyed and not _is_loopback(url.host):
        raise LMError(f"refusing to send an API key over plain http to {url.host!r}; "
                      "use https (plain http is allowed only to this machine)")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _spend_limit(data: bytes) -> bool:
    """Anthropic's 429 for a spent monthly limit: retrying cannot help until it resets."""
    try:
        value = json.loads(data)
    except ValueError:
        return False
    error = value.get("error") if isinstance(value, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    return isinstance(details, dict) and \
        details.get("error_code") == "enforced_spend_limit_reached"


def _printable(data: bytes) -> str:
    return "".join(c if c.isprintable() else "?" for c in data.decode("utf-8", "replace"))


def _retry_after(headers: httpx.Headers) -> float | None:
    """Seconds the server asked us to wait: ``retry-after-ms``, ``retry-after`` as
    seconds or as an HTTP date; None when absent or unreadable."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return None if math.isnan(seconds) else max(0.0, seconds)
