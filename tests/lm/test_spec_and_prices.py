"""Provider specs (what ``rlmbox run --root-lm/--lm`` take) and the price table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlmbox.errors import LMError
from rlmbox.lm.anthropic import AnthropicLM
from rlmbox.lm.openai_compat import OpenAICompatibleLM
from rlmbox.lm.prices import CLAUDE_PRICES, Price, Pricer
from rlmbox.lm.scripted import ScriptedLM
from rlmbox.lm.spec import provider_from_spec

from .fake_api import FakeLMServer


def test_a_bare_path_and_scripted_prefix_are_scripted(tmp_path: Path) -> None:
    script = tmp_path / "root.json"
    script.write_text(json.dumps({"default": "scripted says hi"}))
    for spec in (str(script), f"scripted:{script}"):
        lm = provider_from_spec(spec)
        assert isinstance(lm, ScriptedLM)
        assert lm.complete("x").text == "scripted says hi"


def test_anthropic_spec_reads_key_and_base_url_from_the_environment(
        api: FakeLMServer, key: str) -> None:
    lm = provider_from_spec("anthropic:claude-haiku-4-5", environ={
        "ANTHROPIC_API_KEY": key, "RLMBOX_ANTHROPIC_BASE_URL": api.url})
    assert isinstance(lm, AnthropicLM)
    assert lm.complete("spec").text == "answer to: spec"
    assert lm.secrets == (key,)


def test_anthropic_spec_without_a_key_is_refused() -> None:
    with pytest.raises(LMError, match="ANTHROPIC_API_KEY"):
        provider_from_spec("anthropic:claude-haiku-4-5", environ={})


def test_openai_spec_names_model_and_base_url(api: FakeLMServer, key: str) -> None:
    lm = provider_from_spec(f"openai:local-model@{api.url}/v1", allow_unpriced=True,
                            environ={"OPENAI_API_KEY": key})
    assert isinstance(lm, OpenAICompatibleLM)
    assert lm.model == "local-model"
    assert lm.complete("o").text == "answer to: o"


@pytest.mark.parametrize("spec", ["anthropic:", "scripted:", "openai:", "openai:m@",
                                  "openai:@http://127.0.0.1:1/v1"])
def test_an_incomplete_spec_is_refused(spec: str) -> None:
    with pytest.raises(LMError):
        provider_from_spec(spec, allow_unpriced=True, environ={"ANTHROPIC_API_KEY": "k"})


def test_a_missing_scripted_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LMError, match="cannot read the LM script"):
        provider_from_spec(str(tmp_path / "nope.json"))


def test_an_unpriced_spec_is_refused_without_the_flag(api: FakeLMServer) -> None:
    with pytest.raises(LMError, match="--allow-unpriced"):
        provider_from_spec(f"openai:m@{api.url}/v1", environ={})


def test_dated_model_ids_share_their_family_price_and_nothing_else_does() -> None:
    pricer = Pricer(CLAUDE_PRICES, None, allow_unpriced=False)
    assert pricer.price("claude-haiku-4-5-20251001") == CLAUDE_PRICES["claude-haiku-4-5"]
    assert pricer.price("claude-3-5-haiku-latest") == CLAUDE_PRICES["claude-3-5-haiku"]
    assert pricer.price("claude-sonnet-4-20250514") == CLAUDE_PRICES["claude-sonnet-4"]
    # a new model of a known family is NOT priced as its elder: fail closed
    assert pricer.price("claude-sonnet-4-7") is None
    assert pricer.price("claude-haiku-4-5-turbo") is None
    assert pricer.price("claude-sonnet-4-5") is None   # no official page confirmed it


def test_long_context_requests_use_the_long_rates() -> None:
    price = CLAUDE_PRICES["claude-sonnet-4"]
    assert price.cost(200_000, 1000) == pytest.approx((200_000 * 3 + 1000 * 15) / 1e6)
    assert price.cost(200_001, 1000) == pytest.approx((200_001 * 6 + 1000 * 22.5) / 1e6)
    # cache tokens above the threshold scale with the long input rate (x2)
    assert price.cost(200_001, 0, cache_read_tokens=200_000) == pytest.approx(
        (1 * 6 + 200_000 * 0.6) / 1e6)


def test_cache_writes_and_reads_have_their_own_rates() -> None:
    """Anthropic's list prices: 5-minute cache writes 1.25x input, cache hits 0.1x."""
    price = CLAUDE_PRICES["claude-haiku-4-5"]
    assert price.cost(1000, 10, cache_write_tokens=600, cache_read_tokens=300) == \
        pytest.approx((100 * 1.0 + 600 * 1.25 + 300 * 0.1 + 10 * 5.0) / 1e6)


def test_a_price_without_cache_rates_charges_cache_tokens_as_input() -> None:
    """A gateway reporting cache tokens for a model priced without cache rates: the full
    input rate, an over-count, never an under-count."""
    price = Price(2.0, 4.0)
    assert price.cost(1000, 0, cache_read_tokens=900) == pytest.approx(1000 * 2.0 / 1e6)


def test_more_cache_tokens_than_input_tokens_is_refused() -> None:
    with pytest.raises(LMError, match="cache tokens cannot exceed"):
        Price(1.0, 1.0).cost(10, 0, cache_write_tokens=11)


@pytest.mark.parametrize("rates", [(-1.0, 1.0), (1.0, float("inf")), (float("nan"), 1.0)])
def test_an_impossible_price_is_refused(rates: tuple[float, float]) -> None:
    with pytest.raises(LMError, match="finite, non-negative"):
        Price(*rates)
