"""Any OpenAI-compatible chat completions API as an LM provider, on the official ``openai``
SDK (``POST {base_url}/chat/completions``): OpenAI, vLLM, llama.cpp, Ollama, LiteLLM, ...

No prices are built in (they vary by host): pass ``prices`` for a paid API, or
``allow_unpriced=True`` to count a local server's calls as 0 USD. Without either the
provider refuses to start, so a USD budget never silently counts 0 (fail closed).
These servers cache prompt prefixes on their own; a reported
``usage.prompt_tokens_details.cached_tokens`` is priced as cache reads. No token-counting
endpoint is part of this API, so a token budget is checked after the call only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import openai

from rlmbox.errors import LMError
from rlmbox.lm.base import Completion, LMRequest, TextSink, Turn
from rlmbox.lm.bounded_http import (
    DEFAULT_RETRY,
    DEFAULT_TIMEOUTS,
    RetryPolicy,
    Timeouts,
    bounded_client,
    check_endpoint,
)
from rlmbox.lm.hosted import find_key, mapping, token_count
from rlmbox.lm.http_provider import HttpProvider, RedactingSink, SdkErrors
from rlmbox.lm.prices import Price, Pricer

NO_KEY = "no-key"   # the SDK insists on a key; a keyless local server gets no header


class ResponseTooLarge(openai.OpenAIError):
    """A response over the size cap: an SDK error type, so the SDK does not retry it."""


_ERRORS = SdkErrors(base=openai.OpenAIError, status=openai.APIStatusError,
                    timeout=openai.APITimeoutError, connection=openai.APIConnectionError,
                    too_large=ResponseTooLarge)


class OpenAICompatibleLM(HttpProvider):
    """Completions from an OpenAI-compatible server. Thread-safe; one connection pool.

    Args:
        model: the default model id.
        base_url: the API root including its version, e.g. ``https://api.openai.com/v1``
            or ``http://127.0.0.1:8000/v1``.
        api_key: defaults to ``$OPENAI_API_KEY``; may be absent (local servers), then no
            ``authorization`` header is sent.
        max_tokens: the output cap of a request that names none (None: the server's).
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
        check_endpoint(base_url, keyed=bool(key))
        self._errors = _ERRORS
        self._http, self._transport = bounded_client(
            timeouts=timeouts, retry=retry, max_response_bytes=max_response_bytes,
            too_large=ResponseTooLarge, proxy=proxy)
        self._client = openai.OpenAI(
            api_key=key or NO_KEY, base_url=base_url.rstrip("/"),
            max_retries=retry.attempts - 1, http_client=self._http)

    def complete(self, prompt: str, *, model: str | None = None) -> Completion:
        return self.respond(LMRequest((Turn("user", prompt),)), model=model)

    def respond(self, request: LMRequest, *, model: str | None = None,
                on_text: TextSink | None = None) -> Completion:
        chosen = model or self.model
        self._pricer.check(chosen)
        body = self._body(request, chosen)
        try:
            if on_text is None:
                raw = self._client.chat.completions.with_raw_response.create(**body)
                reply = self._decode(raw.http_response.content, raw.http_response.status_code)
                return self._parse(reply, chosen)
            return self._streamed(body, chosen, on_text)
        except openai.OpenAIError as exc:
            raise self._translate(exc) from None

    def count_input_tokens(self, request: LMRequest, *, model: str | None = None) -> None:
        """None: the chat completions API has no counting endpoint."""
        return

    def _body(self, request: LMRequest, chosen: str) -> dict[str, Any]:
        options = request.options
        messages = [{"role": "system", "content": request.system}] if request.system else []
        messages.extend({"role": t.role, "content": t.text} for t in request.turns)
        body: dict[str, Any] = {"model": chosen, "messages": messages}
        if not self.secrets:   # a keyless local server: send no authorization at all
            body["extra_headers"] = {"Authorization": openai.Omit()}
        max_tokens = options.max_tokens or self.max_tokens
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if options.temperature is not None:
            body["temperature"] = options.temperature
        if options.stop:
            body["stop"] = list(options.stop)
        if options.top_p is not None:
            body["top_p"] = options.top_p
        if options.top_k is not None:   # not OpenAI's: vLLM, llama.cpp and Ollama take it
            body["extra_body"] = {"top_k": options.top_k}
        return body

    def _streamed(self, body: dict[str, Any], chosen: str, on_text: TextSink) -> Completion:
        """Chunks as they arrive; the usage from the last chunk (``include_usage``)."""
        sink = RedactingSink(on_text, self)
        parts: list[str] = []
        usage: object = None
        served: object = None
        with self._client.chat.completions.create(
                **body, stream=True, stream_options={"include_usage": True}) as chunks:
            for chunk in chunks:
                served = getattr(chunk, "model", served)
                usage = getattr(chunk, "usage", None) or usage
                for choice in chunk.choices or ():
                    text = getattr(choice.delta, "content", None)
                    if isinstance(text, str):
                        parts.append(text)
                        sink(text)
        sink.flush()
        if usage is None:
            raise LMError("the LM API stream ended without usage")
        details = getattr(usage, "prompt_tokens_details", None)
        fields = {"prompt_tokens": getattr(usage, "prompt_tokens", None),
                  "completion_tokens": getattr(usage, "completion_tokens", None),
                  "cached_tokens": getattr(details, "cached_tokens", None)}
        return self._priced("".join(parts), served, chosen, fields)

    def _parse(self, reply: Mapping[str, Any], chosen: str) -> Completion:
        if "error" in reply:
            raise LMError(f"the LM API answered with an error: "
                          f"{self.scrub(repr(reply['error']))}")
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
        details = usage.get("prompt_tokens_details")
        fields = {"prompt_tokens": usage.get("prompt_tokens"),
                  "completion_tokens": usage.get("completion_tokens"),
                  "cached_tokens": details.get("cached_tokens")
                  if isinstance(details, dict) else None}
        return self._priced(text, reply.get("model"), chosen, fields)

    def _priced(self, text: str, served: object, chosen: str,
                usage: Mapping[str, Any]) -> Completion:
        """``prompt_tokens`` already includes the cached ones."""
        if usage.get("prompt_tokens") is None or usage.get("completion_tokens") is None:
            raise LMError("the LM API response has no prompt or completion token count")
        return self._completion(
            text, served, chosen, input_tokens=token_count(usage, "prompt_tokens"),
            output_tokens=token_count(usage, "completion_tokens"),
            cache_read_tokens=token_count(usage, "cached_tokens"))
