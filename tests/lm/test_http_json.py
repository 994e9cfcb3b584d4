"""The shared JSON client: how long it waits between tries, and what it never says."""

from __future__ import annotations

import email.utils
import time

import pytest

from rlmbox.errors import LMRequestFailed
from rlmbox.lm.http_json import JsonClient, RetryPolicy

from .fake_api import FakeLMServer, Reply

RETRY = RetryPolicy(attempts=3, base_delay=0.2, max_delay=1.0, max_retry_after=30.0)
BUSY = {"type": "error", "error": {"type": "rate_limit_error", "message": "busy"}}


def _client(api: FakeLMServer, key: str, waits: list[float],
            retry: RetryPolicy = RETRY) -> JsonClient:
    return JsonClient(api.url, headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
                      secrets=[key], retry=retry, sleep=waits.append)


def _ok() -> Reply:
    return Reply(200, {"fine": True})


def test_retry_after_seconds_is_honoured(api: FakeLMServer, key: str) -> None:
    api.push(Reply(429, BUSY, headers={"retry-after": "7"}), _ok())
    waits: list[float] = []
    assert _client(api, key, waits).post("/v1/messages", {}) == {"fine": True}
    assert waits == [7.0]


def test_retry_after_ms_is_honoured(api: FakeLMServer, key: str) -> None:
    api.push(Reply(503, BUSY, headers={"retry-after-ms": "1500"}), _ok())
    waits: list[float] = []
    _client(api, key, waits).post("/v1/messages", {})
    assert waits == [1.5]


def test_retry_after_as_a_date_is_honoured(api: FakeLMServer, key: str) -> None:
    when = email.utils.formatdate(time.time() + 20, usegmt=True)
    api.push(Reply(429, BUSY, headers={"retry-after": when}), _ok())
    waits: list[float] = []
    _client(api, key, waits).post("/v1/messages", {})
    assert len(waits) == 1
    assert 15.0 < waits[0] <= 21.0


def test_a_huge_retry_after_is_capped(api: FakeLMServer, key: str) -> None:
    api.push(Reply(429, BUSY, headers={"retry-after": "86400"}), _ok())
    waits: list[float] = []
    _client(api, key, waits).post("/v1/messages", {})
    assert waits == [30.0]


@pytest.mark.parametrize("value", ["soon", "nan", ""])
def test_an_unreadable_retry_after_falls_back_to_backoff(api: FakeLMServer, key: str,
                                                          value: str) -> None:
    api.push(Reply(429, BUSY, headers={"retry-after": value}), _ok())
    waits: list[float] = []
    _client(api, key, waits).post("/v1/messages", {})
    assert len(waits) == 1
    assert 0.0 <= waits[0] <= 0.2   # the first backoff step, jittered


def test_backoff_grows_and_is_bounded(api: FakeLMServer, key: str) -> None:
    retry = RetryPolicy(attempts=6, base_delay=0.25, max_delay=1.0)
    api.push(*[Reply(500, b"")] * 6)
    waits: list[float] = []
    with pytest.raises(LMRequestFailed, match=r"HTTP 500: \(empty body\)") as caught:
        _client(api, key, waits, retry).post("/v1/messages", {})
    assert caught.value.attempts == 6
    assert len(waits) == 5
    ceilings = [0.25, 0.5, 1.0, 1.0, 1.0]
    assert all(0 <= wait <= top for wait, top in zip(waits, ceilings, strict=True))


def test_a_client_error_is_not_retried(api: FakeLMServer, key: str) -> None:
    api.push(Reply(400, {"type": "error", "error": {"type": "invalid_request_error",
                                                    "message": "max_tokens: too big"}}))
    waits: list[float] = []
    with pytest.raises(LMRequestFailed, match="invalid_request_error: max_tokens: too big"):
        _client(api, key, waits).post("/v1/messages", {})
    assert waits == []


def test_provider_error_text_is_bounded_and_scrubbed(api: FakeLMServer, key: str) -> None:
    api.push(Reply(403, {"error": {"type": "permission_error",
                                   "message": f"key {key} " + "z" * 10_000}}))
    with pytest.raises(LMRequestFailed) as caught:
        _client(api, key, []).post("/v1/messages", {})
    text = str(caught.value)
    assert key not in text
    assert "[redacted]" in text
    assert len(text) <= 600


def test_a_non_json_error_body_is_quoted_printably(api: FakeLMServer, key: str) -> None:
    api.push(Reply(502, b"<html>bad gateway\x1b[31m</html>"), Reply(502, b"x"),
             Reply(502, b"<html>bad gateway\x1b[31m</html>"))
    with pytest.raises(LMRequestFailed) as caught:
        _client(api, key, []).post("/v1/messages", {})
    assert "bad gateway" in str(caught.value)
    assert "\x1b" not in str(caught.value)


def test_a_spent_monthly_limit_is_not_retried(api: FakeLMServer, key: str) -> None:
    """Anthropic's 429 with error_code enforced_spend_limit_reached lasts until the month
    ends: retrying only burns time."""
    api.push(Reply(429, {"type": "error", "error": {
        "type": "rate_limit_error", "message": "spend limit reached",
        "details": {"error_code": "enforced_spend_limit_reached"}}},
        headers={"retry-after": "1"}))
    waits: list[float] = []
    with pytest.raises(LMRequestFailed, match="spend limit reached") as caught:
        _client(api, key, waits).post("/v1/messages", {})
    assert caught.value.status == 429
    assert caught.value.attempts == 1
    assert waits == []
