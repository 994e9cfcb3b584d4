"""The bounds rlmbox adds to the SDKs' HTTP (bounded_http.py), over real sockets.

The SDKs retry and wait themselves; these tests watch them from the server's side: when
each try arrived, how many came, and what the error said.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterator

import pytest

from rlmbox.errors import LMRequestFailed
from rlmbox.lm.anthropic import AnthropicLM
from rlmbox.lm.base import LMRequest, Turn
from rlmbox.lm.bounded_http import RetryPolicy, Timeouts
from rlmbox.lm.openai_compat import OpenAICompatibleLM

from .fake_api import FakeLMServer, Reply, serve

RETRY = RetryPolicy(attempts=3, max_retry_after=30.0)
BUSY = {"type": "error", "error": {"type": "rate_limit_error", "message": "busy"}}


@pytest.fixture
def elsewhere() -> Iterator[FakeLMServer]:
    yield from serve(None)


def _lm(api: FakeLMServer, key: str, retry: RetryPolicy = RETRY, **kwargs: object
        ) -> AnthropicLM:
    return AnthropicLM("claude-haiku-4-5", api_key=key, base_url=api.url, retry=retry,
                       **kwargs)  # type: ignore[arg-type]


def _gap(api: FakeLMServer) -> float:
    first, second = api.arrivals[:2]
    return second - first


def test_retry_after_seconds_is_honoured(api: FakeLMServer, key: str) -> None:
    api.push(Reply(429, BUSY, headers={"retry-after": "0.6"}))
    assert _lm(api, key).complete("x").text == "answer to: x"
    assert 0.55 <= _gap(api) < 3.0


def test_retry_after_ms_is_honoured(api: FakeLMServer, key: str) -> None:
    api.push(Reply(503, BUSY, headers={"retry-after-ms": "600"}))
    _lm(api, key).complete("x")
    assert 0.55 <= _gap(api) < 3.0


def test_retry_after_as_a_date_is_honoured(api: FakeLMServer, key: str) -> None:
    when = email.utils.formatdate(time.time() + 2, usegmt=True)
    api.push(Reply(429, BUSY, headers={"retry-after": when}))
    _lm(api, key).complete("x")
    assert 0.9 <= _gap(api) < 3.5   # an HTTP date has whole seconds


def test_a_huge_retry_after_is_capped(api: FakeLMServer, key: str) -> None:
    """The Anthropic SDK alone would wait a day here."""
    api.push(Reply(429, BUSY, headers={"retry-after": "86400"}))
    started = time.monotonic()
    _lm(api, key, RetryPolicy(attempts=2, max_retry_after=0.3)).complete("x")
    assert time.monotonic() - started < 5.0
    assert _gap(api) >= 0.25


def test_529_with_retry_after_is_retried(api: FakeLMServer, key: str) -> None:
    api.push(Reply(529, {"type": "error", "error": {"type": "overloaded_error",
                                                    "message": "Overloaded"}},
                   headers={"retry-after": "0.3"}))
    lm = _lm(api, key)
    assert lm.complete("x").text == "answer to: x"
    assert lm.retries == 1
    assert _gap(api) >= 0.25


@pytest.mark.parametrize("value", ["soon", "nan"])
def test_an_unreadable_retry_after_falls_back_to_backoff(api: FakeLMServer, key: str,
                                                          value: str) -> None:
    api.push(Reply(429, BUSY, headers={"retry-after": value}))
    _lm(api, key).complete("x")
    assert 0.3 <= _gap(api) <= 2.0   # the SDK's first backoff step: 0.5 s, jittered


def test_a_client_error_is_not_retried(api: FakeLMServer, key: str) -> None:
    api.push(Reply(400, {"type": "error", "error": {"type": "invalid_request_error",
                                                    "message": "max_tokens: too big"}}))
    with pytest.raises(LMRequestFailed, match="invalid_request_error: max_tokens: too big"):
        _lm(api, key).complete("x")
    assert len(api.seen) == 1


def test_provider_error_text_is_bounded_and_scrubbed(api: FakeLMServer, key: str) -> None:
    api.push(Reply(403, {"error": {"type": "permission_error",
                                   "message": f"key {key} " + "z" * 10_000}}))
    with pytest.raises(LMRequestFailed) as caught:
        _lm(api, key).complete("x")
    text = str(caught.value)
    assert key not in text
    assert "[redacted]" in text
    assert len(text) <= 600


def test_a_non_json_error_body_is_quoted_printably(api: FakeLMServer, key: str) -> None:
    api.push(*[Reply(502, b"<html>bad gateway\x1b[31m</html>")] * 2)
    with pytest.raises(LMRequestFailed) as caught:
        _lm(api, key, RetryPolicy(attempts=2)).complete("x")
    assert "bad gateway" in str(caught.value)
    assert "\x1b" not in str(caught.value)
    assert caught.value.attempts == 2


def test_a_spent_monthly_limit_is_not_retried(api: FakeLMServer, key: str) -> None:
    """Anthropic's 429 with error_code enforced_spend_limit_reached lasts until the month
    ends: retrying only burns time."""
    api.push(Reply(429, {"type": "error", "error": {
        "type": "rate_limit_error", "message": "spend limit reached",
        "details": {"error_code": "enforced_spend_limit_reached"}}},
        headers={"retry-after": "1"}))
    with pytest.raises(LMRequestFailed, match="spend limit reached") as caught:
        _lm(api, key).complete("x")
    assert caught.value.status == 429
    assert caught.value.attempts == 1
    assert len(api.seen) == 1


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_not_followed(api: FakeLMServer, key: str, elsewhere: FakeLMServer,
                                    status: int) -> None:
    """Following it would send the key to wherever the server points."""
    api.push(Reply(status, b"", headers={"location": elsewhere.url + "/v1/messages"}))
    with pytest.raises(LMRequestFailed) as caught:
        _lm(api, key).complete("x")
    assert caught.value.status == status
    assert elsewhere.seen == []
    assert key not in str(caught.value)


def test_an_openai_redirect_is_not_followed(api: FakeLMServer, key: str,
                                            elsewhere: FakeLMServer) -> None:
    api.push(Reply(307, b"", headers={"location": elsewhere.url + "/v1/chat/completions"}))
    lm = OpenAICompatibleLM("m", api.url + "/v1", api_key=key, allow_unpriced=True,
                            retry=RETRY)
    with pytest.raises(LMRequestFailed) as caught:
        lm.complete("x")
    assert caught.value.status == 307
    assert elsewhere.seen == []


def test_a_body_that_trickles_slower_than_the_read_timeout_times_out(
        api: FakeLMServer, key: str) -> None:
    api.push(*[Reply(200, b'{"content": [], "usage": {}}' * 4, slow=2.0)] * 2)
    started = time.monotonic()
    with pytest.raises(LMRequestFailed, match="timed out") as caught:
        _lm(api, key, RetryPolicy(attempts=2),
            timeouts=Timeouts(connect=5.0, read=0.3)).complete("x")
    assert caught.value.attempts == 2
    assert time.monotonic() - started < 5.0


def test_an_oversized_stream_is_refused(api: FakeLMServer, key: str) -> None:
    events = b"".join(b'event: ping\ndata: {"type": "ping"}\n\n' for _ in range(20_000))
    api.push(Reply(200, events, headers={"content-type": "text/event-stream"},
                   chunked=True))
    with pytest.raises(LMRequestFailed, match="100000-byte cap"):
        _lm(api, key, max_response_bytes=100_000).respond(
            LMRequest((Turn("user", "x"),)), on_text=lambda text: None)
    assert len(api.seen) == 1   # not retried

