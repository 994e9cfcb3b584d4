"""Anthropic's Messages API as an LM provider (``POST /v1/messages``): the default cloud LM.

One prompt becomes one user message; the completion is the concatenated text blocks of
the reply. Usage and cost come from the reply's ``usage``; a reply without usage is an
error, because a budget must not count a call it cannot measure (fail closed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rlmbox.errors import LMError
from rlmbox.lm.base import Completion
from rlmbox.lm.hosted import mapping, require_key, token_count
from rlmbox.lm.http_json import (
    DEFAULT_RETRY,
    DEFAULT_TIMEOUTS,
    JsonClient,
    RetryPolicy,
    Timeouts,
)
from rlmbox.lm.http_provider import HttpProvider
from rlmbox.lm.prices import CLAUDE_PRICES, Price, Pricer

ANTHROPIC_URL = "https://api.anthropic.com"
ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MODEL = "claude-sonnet-4-5"


class AnthropicLM(HttpProvider):
    """Completions from Anthropic's Messages API. Thread-safe; one connection pool.

    Args:
        model: the default model id (``llm_query(..., model=...)`` may name another, which
            the policy decides and which must be priced too).
        api_key: defaults to ``$ANTHROPIC_API_KEY``; an LMError if neither is set.
        base_url: the API root (a gateway, or a local test server).
        max_tokens: the output cap sent with every request.
        timeouts, retry: see :mod:`rlmbox.lm.http_json`.
        prices: USD per million tokens by model id, over :data:`CLAUDE_PRICES`.
        allow_unpriced: count a model without a price as 0 USD instead of refusing it.
    """

    name = "anthropic"

    def __init__(self, model: str = DEFAULT_MODEL, *, api_key: str | None = None,
                 base_url: str = ANTHROPIC_URL, max_tokens: int = 4096,
                 timeouts: Timeouts = DEFAULT_TIMEOUTS, retry: RetryPolicy = DEFAULT_RETRY,
                 prices: Mapping[str, Price] | None = None, allow_unpriced: bool = False,
                 max_response_bytes: int = 4 << 20, proxy: str | None = None) -> None:
        if max_tokens < 1:
            raise LMError("max_tokens must be at least 1")
        self.model = model
        self.max_tokens = max_tokens
        self._pricer = Pricer(CLAUDE_PRICES, prices, allow_unpriced=allow_unpriced)
        self._pricer.check(model)
        key = require_key(api_key, "ANTHROPIC_API_KEY")
        self.secrets: tuple[str, ...] = (key,)
        self._http = JsonClient(
            base_url, headers={"x-api-key": key, "anthropic-version": ANTHROPIC_VERSION},
            secrets=self.secrets, timeouts=timeouts, retry=retry,
            max_response_bytes=max_response_bytes, proxy=proxy)

    def complete(self, prompt: str, *, model: str | None = None) -> Completion:
        chosen = model or self.model
        self._pricer.check(chosen)   # before any money is spent
        reply = self._http.post("/v1/messages", {
            "model": chosen, "max_tokens": self.max_tokens,
            "messages": [{"role": "user", "content": prompt}]})
        return self._parse(reply, chosen)

    def _parse(self, reply: Mapping[str, Any], chosen: str) -> Completion:
        if reply.get("type") == "error":
            error = reply.get("error")
            detail = (f"{error.get('type')}: {error.get('message')}"
                      if isinstance(error, dict) else repr(error))
            raise LMError(f"the Anthropic API answered with an error: "
                          f"{self._http.scrub(detail)}")
        content = reply.get("content")
        if not isinstance(content, list):
            raise LMError("the Anthropic API response has no content list")
        parts = []
        for block in content:
            if isinstance(block, dict) and block.get("type") == "text":
                text = block.get("text")
                if not isinstance(text, str):
                    raise LMError("the Anthropic API sent a text block without text")
                parts.append(text)
        usage = mapping(reply.get("usage"), "usage")
        # cache tokens are not requested; if a gateway reports them, count them at the
        # full input price (never under-count a budget)
        input_tokens = token_count(usage, "input_tokens", "cache_creation_input_tokens",
                                   "cache_read_input_tokens")
        output_tokens = token_count(usage, "output_tokens")
        return self._completion("".join(parts), reply.get("model"), chosen, input_tokens,
                                output_tokens)
