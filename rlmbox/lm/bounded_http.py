"""The HTTP client the SDK-based providers hand their SDK: bounds the SDKs do not set.

The ``anthropic`` and ``openai`` SDKs retry, back off, time out and map errors themselves;
rlmbox passes them an ``httpx2.Client`` of its own (their ``http_client`` hook) for what
they leave open:

- redirects are not followed (a redirect would carry the key elsewhere), and proxies and
  ``.netrc`` from the environment are ignored (``trust_env=False``);
- a response body over ``max_response_bytes`` is refused, on its ``content-length`` and
  while it streams, with the SDK's own error type so the SDK does not retry it;
- a server's ``retry-after`` (seconds, an HTTP date, or ``retry-after-ms``) is capped at
  :attr:`RetryPolicy.max_retry_after` (the Anthropic SDK would wait up to 49 days);
- Anthropic's 429 for a spent monthly limit is marked ``x-should-retry: false``: retrying
  cannot help until the month ends;
- a key goes only over https, or plain http to this machine (:func:`check_endpoint`).
"""

from __future__ import annotations

import email.utils
import ipaddress
import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx2

from rlmbox.errors import LMError

RETRY_COUNT_HEADER = "x-stainless-retry-count"   # both SDKs number their attempts here


@dataclass(frozen=True)
class Timeouts:
    """Seconds to connect, and to wait for each read of the response (not the whole)."""

    connect: float = 10.0
    read: float = 600.0   # a long completion is silent until it is done


@dataclass(frozen=True)
class RetryPolicy:
    """At most ``attempts`` tries (the SDK backs off between them, 0.5 s doubling up to
    8 s), or waits the server's ``retry-after`` capped at ``max_retry_after`` seconds."""

    attempts: int = 4
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise LMError("retry.attempts must be at least 1")
        if not 0 <= self.max_retry_after < math.inf:
            raise LMError("retry.max_retry_after must be a finite number of seconds")


DEFAULT_TIMEOUTS = Timeouts()
DEFAULT_RETRY = RetryPolicy()
TooLarge = Callable[[str], Exception]


def check_endpoint(base_url: str, *, keyed: bool) -> None:
    """A key travels only over https, or plain http to this machine (127.0.0.0/8, ::1)."""
    try:
        url = httpx2.URL(base_url)
    except httpx2.InvalidURL as exc:
        raise LMError(f"not a usable LM API URL: {base_url!r}") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise LMError(f"the LM API URL must be http(s)://host...: {base_url!r}")
    if url.scheme == "http" and keyed and not _is_loopback(url.host):
        raise LMError(f"refusing to send an API key over plain http to {url.host!r}; "
                      "use https (plain http is allowed only to this machine)")


def bounded_client(*, timeouts: Timeouts, retry: RetryPolicy, max_response_bytes: int,
                   too_large: TooLarge, proxy: str | None = None,
                   max_connections: int = 32) -> tuple[httpx2.Client, BoundedTransport]:
    """The client for an SDK's ``http_client`` and its transport (which counts retries)."""
    transport = BoundedTransport(
        httpx2.HTTPTransport(trust_env=False, proxy=proxy, limits=httpx2.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections)),
        max_response_bytes=max_response_bytes, max_retry_after=retry.max_retry_after,
        too_large=too_large)
    client = httpx2.Client(
        transport=transport, trust_env=False, follow_redirects=False,
        timeout=httpx2.Timeout(timeouts.read, connect=timeouts.connect, pool=timeouts.read))
    return client, transport


class BoundedTransport(httpx2.BaseTransport):
    """Wraps a transport: caps response bodies and ``retry-after``, flags spent limits."""

    def __init__(self, inner: httpx2.BaseTransport, *, max_response_bytes: int,
                 max_retry_after: float, too_large: TooLarge) -> None:
        self._inner = inner
        self._max_bytes = max_response_bytes
        self._max_retry_after = max_retry_after
        self._too_large = too_large
        self._lock = threading.Lock()
        self.retries = 0   # tries the SDK repeated, over the transport's life

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.headers.get(RETRY_COUNT_HEADER, "0") not in ("", "0"):
            with self._lock:
                self.retries += 1
        response = self._inner.handle_request(request)
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            response.close()
            raise self._too_large(
                f"the LM API response declares {declared} bytes, over the "
                f"{self._max_bytes}-byte cap (HTTP {response.status_code})")
        headers = self._bounded_headers(response.headers)
        if not isinstance(response.stream, httpx2.SyncByteStream):
            raise TypeError("a synchronous transport returned an asynchronous body")
        stream = _CappedStream(response.stream, self._max_bytes, response.status_code,
                               self._too_large)
        if response.status_code == 429:
            body = b"".join(stream)
            stream.close()
            if _spend_limit(body):
                headers["x-should-retry"] = "false"
            return httpx2.Response(429, headers=headers, content=body,
                                   extensions=response.extensions)
        return httpx2.Response(response.status_code, headers=headers, stream=stream,
                               extensions=response.extensions)

    def _bounded_headers(self, headers: httpx2.Headers) -> httpx2.Headers:
        """The headers with one ``retry-after`` in seconds, at most the cap (or none)."""
        out = headers.copy()
        wait = retry_after(headers)
        for name in ("retry-after", "retry-after-ms"):
            if name in out:
                del out[name]
        if wait is not None:
            out["retry-after"] = f"{min(wait, self._max_retry_after):.3f}"
        return out

    def close(self) -> None:
        self._inner.close()


class _CappedStream(httpx2.SyncByteStream):
    """A response body that raises once more than ``limit`` bytes have arrived."""

    def __init__(self, inner: httpx2.SyncByteStream, limit: int, status: int,
                 too_large: TooLarge) -> None:
        self._inner = inner
        self._limit = limit
        self._status = status
        self._too_large = too_large

    def __iter__(self) -> Iterator[bytes]:
        size = 0
        for chunk in self._inner:
            size += len(chunk)
            if size > self._limit:
                raise self._too_large(
                    f"the LM API response is over the {self._limit}-byte cap "
                    f"(HTTP {self._status}); not read further")
            yield chunk

    def close(self) -> None:
        self._inner.close()


def retry_after(headers: httpx2.Headers) -> float | None:
    """Seconds the server asked us to wait: ``retry-after-ms``, ``retry-after`` as
    seconds or as an HTTP date; None when absent or unreadable."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            seconds = float(millis) / 1000
        except ValueError:
            seconds = math.nan
        if math.isfinite(seconds):
            return max(0.0, seconds)
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
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _spend_limit(body: bytes) -> bool:
    """Anthropic's 429 for a spent monthly limit (``enforced_spend_limit_reached``)."""
    try:
        value = json.loads(body)
    except ValueError:
        return False
    error = value.get("error") if isinstance(value, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    return isinstance(details, dict) and \
        details.get("error_code") == "enforced_spend_limit_reached"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
