"""Any OpenAI-compatible chat completions API as an LM provider
(``POST {base_url}/chat/completions``): OpenAI, vLLM, llama.cpp, Ollama, LiteLLM, ...

No prices are built in (they vary by host): pass ``prices`` for a paid API, or
``allow_unpriced=True`` to count a local server's calls as 0 USD. Without either the
provider refuses to start, so a USD budget never silently counts 0 (fail closed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rlmbox.errors import LMError
from rlmbox.lm.base import Completion
from rlmbox.lm.hosted import find_key, mapping, token_count
from rlmbox.lm.http_json import (
    DEFAULT_RETRY,
    DEFAULT_TIMEOUTS,
    JsonClient,
    RetryPolicy,
    Timeouts,
)
from rlmbox.lm.http_provider import HttpProvider
from rlmbox.lm.prices import Price, Pricer


class OpenAICompatibleLM(HttpProvider):
    """Completions from an OpenAI-compatible server. Thread-safe; one connection pool.

    Args:
        model: the default model id.
        base_url: the API root including its version, e.g. ``https://api.openai.com/v1``
            or ``http://127.0.0.1:8000/v1``.
        api_key: defaults to ``$OPENAI_API_KEY``; may be absent (local servers), then no
            ``authorization`` header is sent.
        max_tokens: the output cap sent with every request (None: the server's default).
        prices: USD per million tokens by model id.
        allow_unpriced: count a model without a price as 0 USD instead of refusing it.
    """

    name = "openai-compatible"

    def __init__(self, model: str, base_url: str, *, api_key: str | None = None,
                 max_tokens: int | None = 4096, timeouts: Timeouts = DEFAULT_TIMEOUTS,
                 retry: RetryPolicy = DEFAULT_RETRY,
                 prices: Mapping[str, Price] | None = None, allow_unpriced: bool = False,
                 max_response_bytes: int = 4 << 20, proxy: str | None = None) -> None:
        if max_tokens is not None and max_tokens < 1:
            raise LMError("max_tokens must be at least 1")
        self.model = model
        self.max_tokens = max_tokens
        self._pricer = Pricer({}, prices, allow_unpriced=allow_unpriced)
        self._pricer.check(model)
        key = find_key(api_key, "OPENAI_API_KEY")
        self.secrets: tuple[str, ...] = (key,) if key else ()
        headers = {"authorization": f"Bearer {key}"} if key else {}
        self._http = JsonClient(
            base_url.rstrip("/") + "/", headers=headers, secrets=self.secrets,
            timeouts=timeouts, retry=retry, max_response_bytes=max_response_bytes,
            proxy=proxy)

    def complete(self, prompt: str, *, model: str | None = None) -> Completion:
        chosen = model or self.model
        self._pricer.check(chosen)
        body: dict[str, Any] = {"model": chosen,
                                "messages": [{"role": "user", "content": prompt}]}
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        reply = self._http.post("chat/completions", body)
        return self._parse(reply, chosen)

    def _parse(self, reply: Mapping[str, Any], chosen: str) -> Completion:
        if "error" in reply:
            raise LMError(f"the LM API answered with an error: "
                          f"{self._http.scrub(repr(reply['error']))}")
        choices = reply.get("choices")
        if not isinstance(choices, list) or not choices:
            raise LMError("the LM API response has no choices")
        message = mapping(mapping(choices[0], "choices[0]").get("message"),
                          "choices[0].message")
        text = message.get("content")
        if text is None:
            text = ""   # e.g. a refusal or a tool call: no text to give back
        if not isinstance(text, str):
            raise LMError("the LM API sent message content that is not a string")
        usage = mapping(reply.get("usage"), "usage")
        input_tokens = token_count(usage, "prompt_tokens")
        output_tokens = token_count(usage, "completion_tokens")
        return self._completion(text, reply.get("model"), chosen, input_tokens,
                                output_tokens)
