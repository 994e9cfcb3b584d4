"""AnthropicLM over real HTTP against the local test double of Anthropic's API."""

from __future__ import annotations

import threading
import traceback

import pytest
from anthropic._constants import ANTHROPIC_API_VERSION

from rlmbox.errors import LMError, LMRequestFailed
from rlmbox.lm.anthropic import AnthropicLM
from rlmbox.lm.bounded_http import RetryPolicy, Timeouts
from rlmbox.lm.prices import Price

from .conftest import FAST_RETRY, SHORT
from .fake_api import FakeLMServer, Reply, sent_key


def _lm(api: FakeLMServer, key: str, **kwargs: object) -> AnthropicLM:
    options: dict[str, object] = {"model": "claude-haiku-4-5", "api_key": key,
                                  "base_url": api.url, "retry": FAST_RETRY, "timeouts": SHORT}
    options.update(kwargs)
    return AnthropicLM(**options)  # type: ignore[arg-type]


def _all_text(exc: BaseException) -> str:
    """Everything an error could print: message, repr and the whole chained traceback."""
    return f"{exc}\n{exc!r}\n" + "".join(traceback.format_exception(exc))


def test_a_completion_carries_text_usage_and_cost(api: FakeLMServer, key: str) -> None:
    with _lm(api, key, max_tokens=321) as lm:
        done = lm.complete("hello there")
    assert done.text == "answer to: hello there"
    assert done.model == "claude-haiku-4-5"
    assert (done.input_tokens, done.output_tokens) == (11, 22)
    assert done.cost_usd == pytest.approx((11 * 1.0 + 22 * 5.0) / 1_000_000)
    assert api.problems == []
    [seen] = api.seen
    assert seen.path == "/v1/messages"
    assert sent_key(seen.headers) == key
    assert seen.headers["anthropic-version"] == ANTHROPIC_API_VERSION   # the SDK's own
    assert seen.body == {"model": "claude-haiku-4-5", "max_tokens": 321,
                         "messages": [{"role": "user", "content": "hello there"}]}


def test_text_blocks_are_joined_and_other_blocks_skipped(api: FakeLMServer, key: str) -> None:
    api.push(Reply(200, {"type": "message", "stop_reason": "max_tokens", "content": [
        {"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "part one, "},
        {"type": "text", "text": "part two"}],
        "usage": {"input_tokens": 5, "output_tokens": 7}}))
    done = _lm(api, key).complete("q")
    assert done.text == "part one, part two"
    assert done.output_tokens == 7


def test_a_429_with_retry_after_is_retried(api: FakeLMServer, key: str) -> None:
    api.push(Reply(429, {"type": "error", "error": {"type": "rate_limit_error",
                                                    "message": "slow down"}},
                   headers={"retry-after": "0"}))
    lm = _lm(api, key)
    assert lm.complete("again").text == "answer to: again"
    assert lm.retries == 1
    assert len(api.seen) == 2


def test_529_overloaded_is_retried(api: FakeLMServer, key: str) -> None:
    api.push(Reply(529, {"type": "error", "error": {"type": "overloaded_error",
                                                    "message": "Overloaded"}}))
    lm = _lm(api, key)
    assert lm.complete("x").text == "answer to: x"
    assert lm.retries == 1


def test_500_forever_gives_up_after_the_attempts(api: FakeLMServer, key: str) -> None:
    api.push(*[Reply(500, {"type": "error", "error": {"type": "api_error",
                                                      "message": "internal"}})] * 5)
    with pytest.raises(LMRequestFailed) as caught:
        _lm(api, key).complete("x")
    assert caught.value.status == 500
    assert caught.value.attempts == 3
    assert "HTTP 500" in str(caught.value)
    assert "api_error: internal" in str(caught.value)
    assert len(api.seen) == 3


def test_401_is_not_retried_and_never_shows_the_key(api: FakeLMServer, key: str) -> None:
    """The server even echoes the key in its error text: it is scrubbed."""
    api.push(Reply(401, {"type": "error", "error": {
        "type": "authentication_error", "message": f"invalid x-api-key {key}"}}))
    lm = _lm(api, key)
    with pytest.raises(LMRequestFailed) as caught:
        lm.complete("x")
    assert caught.value.status == 401
    assert caught.value.attempts == 1
    assert "authentication_error" in str(caught.value)
    assert key not in _all_text(caught.value)
    assert key not in repr(lm)
    assert len(api.seen) == 1


def test_a_wrong_key_is_refused_by_the_server(api: FakeLMServer, key: str) -> None:
    wrong = key[::-1]
    with pytest.raises(LMRequestFailed) as caught:
        _lm(api, wrong).complete("x")
    assert caught.value.status == 401
    assert wrong not in _all_text(caught.value)


def test_a_malformed_json_body_is_an_error(api: FakeLMServer, key: str) -> None:
    api.push(Reply(200, b'{"content": [tru'))
    with pytest.raises(LMRequestFailed, match="not a JSON object"):
        _lm(api, key).complete("x")


@pytest.mark.parametrize("reply", [
    {"type": "message", "content": "not a list", "usage": {"input_tokens": 1,
                                                           "output_tokens": 1}},
    {"type": "message", "content": [{"type": "text"}], "usage": {"input_tokens": 1,
                                                                 "output_tokens": 1}},
    {"type": "message", "content": [{"type": "text", "text": "x"}]},
    {"type": "message", "content": [], "usage": {"input_tokens": -5, "output_tokens": 1}},
    {"type": "message", "content": [], "usage": {"input_tokens": "9", "output_tokens": 1}},
    {"type": "error", "error": {"type": "overloaded_error", "message": "later"}},
])
def test_a_reply_of_the_wrong_shape_is_an_error(api: FakeLMServer, key: str,
                                                reply: dict[str, object]) -> None:
    """No text, no or impossible usage, an error body with 200: LMError, never a
    completion that would count 0 tokens against the budget."""
    api.push(Reply(200, reply))
    with pytest.raises(LMError):
        _lm(api, key).complete("x")


@pytest.mark.parametrize("chunked", [False, True])
def test_a_response_over_the_size_cap_is_refused(api: FakeLMServer, key: str,
                                                 chunked: bool) -> None:
    api.push(Reply(200, b'{"pad": "' + b"x" * 300_000 + b'"}', chunked=chunked))
    with pytest.raises(LMRequestFailed, match="100000-byte cap"):
        _lm(api, key, max_response_bytes=100_000).complete("x")


def test_a_server_that_hangs_times_out(api: FakeLMServer, key: str) -> None:
    api.push(Reply(hang=True), Reply(hang=True))
    lm = _lm(api, key, timeouts=Timeouts(connect=5.0, read=0.3),
             retry=RetryPolicy(attempts=2))
    with pytest.raises(LMRequestFailed, match="timed out") as caught:
        lm.complete("x")
    assert caught.value.status is None
    assert caught.value.attempts == 2


def test_a_closed_port_is_a_connection_error(key: str) -> None:
    probe = FakeLMServer(key)
    url = probe.url
    probe.stop()   # nothing listens there now
    lm = AnthropicLM("claude-haiku-4-5", api_key=key, base_url=url, retry=FAST_RETRY)
    with pytest.raises(LMRequestFailed, match="cannot reach") as caught:
        lm.complete("x")
    assert caught.value.attempts == 3
    assert key not in _all_text(caught.value)


def test_a_redirect_is_not_followed(api: FakeLMServer, key: str) -> None:
    """Following it would carry the key to wherever the Location points."""
    api.push(Reply(307, b"", headers={"location": "http://127.0.0.1:9/v1/messages"}))
    with pytest.raises(LMRequestFailed) as caught:
        _lm(api, key).complete("x")
    assert caught.value.status == 307
    assert len(api.seen) == 1


def test_a_missing_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(LMError, match="ANTHROPIC_API_KEY"):
        AnthropicLM("claude-haiku-4-5", base_url="http://127.0.0.1:9")


def test_the_key_comes_from_the_environment(api: FakeLMServer, key: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", key)
    lm = AnthropicLM("claude-haiku-4-5", base_url=api.url, retry=FAST_RETRY)
    assert lm.complete("env").text == "answer to: env"
    assert sent_key(api.seen[0].headers) == key


def test_a_key_is_never_sent_over_plain_http_off_this_machine(key: str) -> None:
    with pytest.raises(LMError, match="plain http"):
        AnthropicLM("claude-haiku-4-5", api_key=key, base_url="http://api.example.com")


def test_a_model_without_a_price_is_refused(api: FakeLMServer, key: str) -> None:
    with pytest.raises(LMError, match="no price is known for model 'claude-new-9'"):
        _lm(api, key, model="claude-new-9")
    lm = _lm(api, key)
    with pytest.raises(LMError, match="no price"):
        lm.complete("x", model="claude-new-9")   # a model chosen per call, too
    assert api.seen == []   # refused before any request (and any spend)


def test_unpriced_models_count_zero_only_when_allowed(api: FakeLMServer, key: str) -> None:
    done = _lm(api, key, model="claude-new-9", allow_unpriced=True).complete("x")
    assert done.cost_usd == 0.0
    assert done.input_tokens == 1


def test_prices_can_be_overridden(api: FakeLMServer, key: str) -> None:
    lm = _lm(api, key, model="claude-new-9", prices={"claude-new-9": Price(2.0, 4.0)})
    done = lm.complete("abcd")
    assert done.cost_usd == pytest.approx((4 * 2.0 + len(done.text) * 4.0) / 1_000_000)


def test_concurrent_calls_each_get_their_own_answer(api: FakeLMServer, key: str) -> None:
    lm = _lm(api, key)
    results: dict[int, str] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(16)

    def call(index: int) -> None:
        try:
            barrier.wait()
            results[index] = lm.complete(f"prompt {index}").text
        except BaseException as exc:   # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert results == {i: f"answer to: prompt {i}" for i in range(16)}
    assert len(api.seen) == 16
