"""What the SDK-based providers add: system prompts, prompt caching, streaming, counting.

Against the local test double (fake_api.py), which plays Anthropic's cache accounting
(a prefix up to a ``cache_control`` breakpoint seen before is read from the cache) and
OpenAI-compatible automatic caching, and answers ``"stream": true`` as server-sent events.
"""

from __future__ import annotations

import pytest

from rlmbox.errors import LMError
from rlmbox.lm.anthropic import AnthropicLM
from rlmbox.lm.base import CallOptions, LMRequest, Turn
from rlmbox.lm.openai_compat import OpenAICompatibleLM
from rlmbox.lm.prices import CLAUDE_PRICES, Price

from .conftest import FAST_RETRY
from .fake_api import FakeLMServer

SYSTEM = "You are terse. " * 20


def _anthropic(api: FakeLMServer, key: str) -> AnthropicLM:
    return AnthropicLM("claude-haiku-4-5", api_key=key, base_url=api.url, retry=FAST_RETRY)


def _history(turns: int) -> tuple[Turn, ...]:
    out: list[Turn] = [Turn("user", "question 0")]
    for index in range(1, turns):
        out += [Turn("assistant", f"answer {index - 1}"), Turn("user", f"question {index}")]
    return tuple(out)


def test_a_cached_prefix_is_written_once_then_read(api: FakeLMServer, key: str) -> None:
    """The second request resends the first as its prefix: read from the cache, priced
    at the cache-read rate; the request marks the system block and the last turn."""
    lm = _anthropic(api, key)
    first = lm.respond(LMRequest(_history(1), system=SYSTEM, cache_prefix=True))
    second = lm.respond(LMRequest(_history(2), system=SYSTEM, cache_prefix=True))
    first_len = len(SYSTEM) + len("question 0")
    assert (first.cache_write_tokens, first.cache_read_tokens) == (first_len, 0)
    assert second.cache_read_tokens == first_len
    assert second.input_tokens == first_len + len("answer 0") + len("question 1")
    assert second.cache_write_tokens == second.input_tokens - first_len
    price = CLAUDE_PRICES["claude-haiku-4-5"]
    assert second.cost_usd == pytest.approx(price.cost(
        second.input_tokens, second.output_tokens,
        cache_write_tokens=second.cache_write_tokens, cache_read_tokens=first_len))
    assert second.cost_usd < price.cost(second.input_tokens, second.output_tokens)
    body = api.seen[1].body
    assert body["system"] == [{"type": "text", "text": SYSTEM,
                               "cache_control": {"type": "ephemeral"}}]
    assert body["messages"][-1]["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert all(isinstance(m["content"], str) for m in body["messages"][:-1])


def test_without_cache_prefix_nothing_is_marked(api: FakeLMServer, key: str) -> None:
    done = _anthropic(api, key).respond(LMRequest(_history(2), system=SYSTEM))
    assert (done.cache_write_tokens, done.cache_read_tokens) == (0, 0)
    assert api.seen[0].body["system"] == [{"type": "text", "text": SYSTEM}]


def test_per_call_options_reach_the_api(api: FakeLMServer, key: str) -> None:
    _anthropic(api, key).respond(LMRequest(
        _history(1), options=CallOptions(max_tokens=17, stop=("END",))))
    assert api.seen[0].body["max_tokens"] == 17
    assert api.seen[0].body["stop_sequences"] == ["END"]


def test_anthropic_sampling_parameters_reach_the_api(api: FakeLMServer, key: str) -> None:
    """temperature, top_p and top_k are top-level fields of the Messages API that the SDK's
    typed arguments lack: they go as body fields, streamed or not, never to count_tokens."""
    lm = _anthropic(api, key)
    options = CallOptions(temperature=0.2, top_p=0.9, top_k=40)
    lm.respond(LMRequest(_history(1), options=options))
    lm.respond(LMRequest(_history(1), options=options), on_text=lambda text: None)
    lm.count_input_tokens(LMRequest(_history(1), options=options))
    for seen in api.seen[:2]:
        assert (seen.body["temperature"], seen.body["top_p"], seen.body["top_k"]) == \
            (0.2, 0.9, 40)
    assert {"temperature", "top_p", "top_k"}.isdisjoint(api.seen[2].body)
    assert api.problems == []


def test_anthropic_refuses_a_temperature_above_its_range(api: FakeLMServer,
                                                         key: str) -> None:
    """Anthropic's temperature runs 0 to 1 (OpenAI's to 2): refused before any request."""
    with pytest.raises(LMError, match="temperature"):
        _anthropic(api, key).respond(LMRequest(_history(1),
                                               options=CallOptions(temperature=1.5)))
    assert api.seen == []


def test_a_streamed_reply_arrives_in_pieces_and_is_metered_the_same(
        api: FakeLMServer, key: str) -> None:
    api.answer = lambda prompt: "a longer reply, " * 10   # longer than the held-back key
    lm = _anthropic(api, key)
    pieces: list[str] = []
    streamed = lm.respond(LMRequest(_history(1)), on_text=pieces.append)
    whole = lm.respond(LMRequest(_history(1)))
    assert len(pieces) > 1
    assert "".join(pieces) == streamed.text == whole.text
    assert (streamed.input_tokens, streamed.output_tokens, streamed.cost_usd) == \
        (whole.input_tokens, whole.output_tokens, whole.cost_usd)
    assert api.seen[0].body["stream"] is True


def test_a_key_echoed_across_stream_pieces_never_reaches_the_display(
        api: FakeLMServer, key: str) -> None:
    """The double streams 5 characters an event, so the key is split across many."""
    api.answer = lambda prompt: f"here is {key} again"
    pieces: list[str] = []
    done = _anthropic(api, key).respond(LMRequest(_history(1)), on_text=pieces.append)
    assert key not in "".join(pieces)
    assert "".join(pieces) == done.text == "here is [redacted] again"


def test_input_tokens_are_counted_before_the_call(api: FakeLMServer, key: str) -> None:
    request = LMRequest(_history(2), system=SYSTEM)
    counted = _anthropic(api, key).count_input_tokens(request)
    assert counted == len(SYSTEM) + len("question 0answer 0question 1")
    assert api.seen[0].path == "/v1/messages/count_tokens"
    assert "max_tokens" not in api.seen[0].body


def test_openai_compatible_cached_tokens_are_cache_reads(api: FakeLMServer,
                                                         key: str) -> None:
    lm = OpenAICompatibleLM("gpt-test", api.url + "/v1", api_key=key, retry=FAST_RETRY,
                            prices={"gpt-test": Price(2.0, 4.0, cache_read_per_mtok=0.5)})
    lm.respond(LMRequest(_history(1), system=SYSTEM))
    second = lm.respond(LMRequest(_history(2), system=SYSTEM, options=CallOptions(
        temperature=0.0, stop=("END",), top_p=0.5, top_k=7)))
    assert second.cache_read_tokens == len(SYSTEM) + len("question 0")
    assert second.cost_usd == pytest.approx(
        ((second.input_tokens - second.cache_read_tokens) * 2.0
         + second.cache_read_tokens * 0.5 + second.output_tokens * 4.0) / 1e6)
    body = api.seen[1].body
    assert body["messages"][0] == {"role": "system", "content": SYSTEM}
    assert (body["temperature"], body["stop"], body["top_p"], body["top_k"]) == \
        (0.0, ["END"], 0.5, 7)


def test_openai_compatible_streaming(api: FakeLMServer, key: str) -> None:
    api.answer = lambda prompt: "a longer reply, " * 10
    lm = OpenAICompatibleLM("m", api.url + "/v1", api_key=key, allow_unpriced=True,
                            retry=FAST_RETRY)
    pieces: list[str] = []
    done = lm.respond(LMRequest(_history(1)), on_text=pieces.append)
    assert len(pieces) > 1
    assert "".join(pieces) == done.text == "a longer reply, " * 10
    assert (done.input_tokens, done.output_tokens) == (len("question 0"), len(done.text))
    assert api.seen[0].body["stream_options"] == {"include_usage": True}
