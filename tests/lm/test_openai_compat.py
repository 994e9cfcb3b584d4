"""OpenAICompatibleLM over real HTTP against the local OpenAI-compatible test double."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rlmbox.errors import LMError, LMRequestFailed
from rlmbox.lm.openai_compat import OpenAICompatibleLM
from rlmbox.lm.prices import Price

from .conftest import FAST_RETRY
from .fake_api import FakeLMServer, Reply, serve


@pytest.fixture
def keyless() -> Iterator[FakeLMServer]:
    yield from serve(None)


def test_a_completion_with_a_key_and_a_price(api: FakeLMServer, key: str) -> None:
    lm = OpenAICompatibleLM("gpt-test", api.url + "/v1", api_key=key, retry=FAST_RETRY,
                            prices={"gpt-test": Price(1.0, 2.0)}, max_tokens=50)
    done = lm.complete("hi")
    assert done.text == "answer to: hi"
    assert (done.input_tokens, done.output_tokens) == (2, 13)
    assert done.cost_usd == pytest.approx((2 * 1.0 + 13 * 2.0) / 1_000_000)
    assert api.problems == []
    [seen] = api.seen
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["authorization"] == f"Bearer {key}"
    assert seen.body == {"model": "gpt-test", "max_tokens": 50,
                         "messages": [{"role": "user", "content": "hi"}]}


def test_a_local_server_needs_no_key(keyless: FakeLMServer,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    lm = OpenAICompatibleLM("llama", keyless.url + "/v1/", allow_unpriced=True)
    done = lm.complete("hi")
    assert done.text == "answer to: hi"
    assert done.cost_usd == 0.0
    assert "authorization" not in keyless.seen[0].headers
    assert lm.secrets == ()


def test_an_unpriced_model_is_refused_unless_allowed(api: FakeLMServer, key: str) -> None:
    with pytest.raises(LMError, match="no price is known for model 'gpt-test'"):
        OpenAICompatibleLM("gpt-test", api.url + "/v1", api_key=key)


def test_the_error_body_names_the_problem_without_the_key(api: FakeLMServer,
                                                          key: str) -> None:
    wrong = key[::-1]
    lm = OpenAICompatibleLM("m", api.url + "/v1", api_key=wrong, allow_unpriced=True)
    with pytest.raises(LMRequestFailed, match="Incorrect API key provided") as caught:
        lm.complete("x")
    assert caught.value.status == 401
    assert wrong not in str(caught.value)


@pytest.mark.parametrize("reply", [
    {"choices": []},
    {"choices": [{"message": {"content": 5}}], "usage": {"prompt_tokens": 1,
                                                         "completion_tokens": 1}},
    {"choices": [{"message": {"content": "x"}}]},
    {"error": {"message": "model overloaded"}},
])
def test_a_reply_of_the_wrong_shape_is_an_error(api: FakeLMServer, key: str,
                                                reply: dict[str, object]) -> None:
    api.push(Reply(200, reply))
    lm = OpenAICompatibleLM("m", api.url + "/v1", api_key=key, allow_unpriced=True)
    with pytest.raises(LMError):
        lm.complete("x")


def test_null_content_is_empty_text(api: FakeLMServer, key: str) -> None:
    api.push(Reply(200, {"choices": [{"message": {"content": None, "refusal": "no"}}],
                         "usage": {"prompt_tokens": 3, "completion_tokens": 0}}))
    lm = OpenAICompatibleLM("m", api.url + "/v1", api_key=key, allow_unpriced=True)
    assert lm.complete("x").text == ""
