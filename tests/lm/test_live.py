"""The providers against the real APIs: runs only when a key is set (never in CI here).

``ANTHROPIC_API_KEY`` runs the Anthropic test (``RLMBOX_LIVE_ANTHROPIC_MODEL``, default
claude-haiku-4-5); ``OPENAI_API_KEY`` with ``RLMBOX_OPENAI_BASE_URL`` runs the
OpenAI-compatible one (``RLMBOX_LIVE_OPENAI_MODEL``). Every other test stays on 127.0.0.1.
"""

from __future__ import annotations

import os

import pytest

from rlmbox.lm.base import LMRequest, Turn

REQUEST = LMRequest((Turn("user", "Reply with the single word: pong"),),
                    system="You answer in one word.")


@pytest.mark.skipif(not os.environ.get("ANTHROPIC_API_KEY"),
                    reason="live test: set ANTHROPIC_API_KEY")
def test_anthropic_live() -> None:
    from rlmbox.lm.anthropic import AnthropicLM

    model = os.environ.get("RLMBOX_LIVE_ANTHROPIC_MODEL", "claude-haiku-4-5")
    with AnthropicLM(model, allow_unpriced=True) as lm:
        counted = lm.count_input_tokens(REQUEST)
        pieces: list[str] = []
        done = lm.respond(REQUEST, on_text=pieces.append)
    assert "pong" in done.text.lower()
    assert "".join(pieces) == done.text
    assert done.input_tokens == counted
    assert done.output_tokens > 0


@pytest.mark.skipif(not (os.environ.get("OPENAI_API_KEY")
                         and os.environ.get("RLMBOX_OPENAI_BASE_URL")),
                    reason="live test: set OPENAI_API_KEY and RLMBOX_OPENAI_BASE_URL")
def test_openai_compatible_live() -> None:
    from rlmbox.lm.openai_compat import OpenAICompatibleLM

    model = os.environ.get("RLMBOX_LIVE_OPENAI_MODEL", "gpt-4o-mini")
    with OpenAICompatibleLM(model, os.environ["RLMBOX_OPENAI_BASE_URL"],
                            allow_unpriced=True) as lm:
        done = lm.respond(REQUEST)
    assert "pong" in done.text.lower()
    assert done.input_tokens > 0
