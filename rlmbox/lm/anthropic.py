"""Anthropic's Messages API as an LM provider, on the official ``anthropic`` SDK.

The SDK does the HTTP: retries with backoff, ``retry-after``, timeouts, typed errors,
server-sent events. rlmbox adds what a sandbox runtime needs (:mod:`bounded_http`:
no redirects, a response-size cap, a capped ``retry-after``, a key only over https off
this machine) and checks the reply before anything is charged: a reply without usage,
or with impossible usage, is an error, because a budget must not count a call it cannot
measure (fail closed). The SDK's response models are built without validation, so the
JSON is checked here, field by field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anthropic

from rlmbox.errors import LMError
from rlmbox.lm.base import CallOptions, Completion, LMRequest, TextSink, Turn
from rlmbox.lm.bounded_http import (
    DEFAULT_RETRY,
    DEFAULT_TIMEOUTS,
    RetryPolicy,
    Timeouts,
    bounded_client,
    check_endpoint,
)
from rlmbox.lm.hosted import mapping, require_key, token_count
from rlmbox.lm.http_provider import HttpProvider, RedactingSink, SdkErrors
from rlmbox.lm.prices import CLAUDE_PRICES, Price, Pricer

ANTHROPIC_URL = "https://api.anthropic.com"
DEFAULT_MODEL = "claude-sonnet-4-6"
CACHE_MARK = {"type": "ephemeral"}   # the 5-minute cache the price table prices


class ResponseTooLarge(anthropic.AnthropicError):
    """A response over the size cap: an SDK error type, so the SDK does not retry it."""


_ERRORS = SdkErrors(base=anthropic.AnthropicError, status=anthropic.APIStatusError,
                    timeout=anthropic.APITimeoutError,
                    connection=anthropic.APIConnectionError, too_large=ResponseTooLarge)


class AnthropicLM(HttpProvider):
    """Completions from Anthropic's Messages API. Thread-safe; one connection pool.

    Args:
        model: the default model id (``llm_query(..., model=...)`` may name another, which
            the policy decides and which must be priced too).
        api_key: defaults to ``$ANTHROPIC_API_KEY``; an LMError if neither is set.
        base_url: the API root (a gateway, or a local test server).
        max_tokens: the output cap of a request that names none.
        timeouts, retry: see :mod:`rlmbox.lm.bounded_http`.
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
        check_endpoint(base_url, keyed=True)
        self._errors = _ERRORS
        self._http, self._transport = bounded_client(
            timeouts=timeouts, retry=retry, max_response_bytes=max_response_bytes,
            too_large=ResponseTooLarge, proxy=proxy)
        self._client = anthropic.Anthropic(
            api_key=key, base_url=base_url, max_retries=retry.attempts - 1,
            http_client=self._http, open_telemetry=False)

    def complete(self, prompt: str, *, model: str | None = None) -> Completion:
        return self.respond(LMRequest((Turn("user", prompt),)), model=model)

    def respond(self, request: LMRequest, *, model: str | None = None,
                on_text: TextSink | None = None) -> Completion:
        chosen = model or self.model
        self._pricer.check(chosen)   # before any money is spent
        body = {**self._body(request, chosen), **_sampling(request.options)}
        try:
            if on_text is None:
                raw = self._client.messages.with_raw_response.create(**body)
                reply = self._decode(raw.http_response.content, raw.http_response.status_code)
                return self._parse(reply, chosen)
            return self._streamed(body, chosen, on_text)
        except anthropic.AnthropicError as exc:
            raise self._translate(exc) from None

    def count_input_tokens(self, request: LMRequest, *, model: str | None = None) -> int:
        """The request's input tokens by the API's own count (``/v1/messages/count_tokens``,
        free of charge): what a token budget reserves before the call."""
        chosen = model or self.model
        body = self._body(request, chosen)
        del body["max_tokens"]
        body.pop("stop_sequences", None)
        try:
            raw = self._client.messages.with_raw_response.count_tokens(**body)
            reply = self._decode(raw.http_response.content, raw.http_response.status_code)
        except anthropic.AnthropicError as exc:
            raise self._translate(exc) from None
        return token_count(reply, "input_tokens")

    def _body(self, request: LMRequest, chosen: str) -> dict[str, Any]:
        options = request.options
        last = len(request.turns) - 1
        body: dict[str, Any] = {
            "model": chosen, "max_tokens": options.max_tokens or self.max_tokens,
            "messages": [_message(turn, cache=request.cache_prefix and index == last)
                         for index, turn in enumerate(request.turns)]}
        if request.system:
            block: dict[str, Any] = {"type": "text", "text": request.system}
            if request.cache_prefix:
                block["cache_control"] = CACHE_MARK
            body["system"] = [block]
        if options.stop:
            body["stop_sequences"] = list(options.stop)
        return body

    def _streamed(self, body: dict[str, Any], chosen: str, on_text: TextSink) -> Completion:
        """The reply as server-sent events: text to ``on_text`` as it arrives; usage from
        ``message_start`` (input, cache) and ``message_delta`` (output)."""
        sink = RedactingSink(on_text, self)
        parts: list[str] = []
        usage: dict[str, Any] = {}
        served: object = None
        with self._client.messages.create(**body, stream=True) as events:
            for event in events:
                if event.type == "message_start":
                    served = getattr(event.message, "model", None)
                    usage.update(_fields(event.message.usage))
                elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                    text = event.delta.text
                    if not isinstance(text, str):
                        raise LMError("the Anthropic API streamed a text delta without text")
                    parts.append(text)
                    sink(text)
                elif event.type == "message_delta":
                    usage["output_tokens"] = getattr(event.usage, "output_tokens", None)
        sink.flush()
        if "input_tokens" not in usage or usage.get("output_tokens") is None:
            raise LMError("the Anthropic API stream ended without usage")
        return self._priced("".join(parts), served, chosen, usage)

    def _parse(self, reply: Mapping[str, Any], chosen: str) -> Completion:
        if reply.get("type") == "error":
            error = reply.get("error")
            detail = (f"{error.get('type')}: {error.get('message')}"
                      if isinstance(error, dict) else repr(error))
            raise LMError(f"the Anthropic API answered with an error: {self.scrub(detail)}")
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
        if "input_tokens" not in usage or "output_tokens" not in usage:
            raise LMError("the Anthropic API response has no input or output token count")
        return self._priced("".join(parts), reply.get("model"), chosen, usage)

    def _priced(self, text: str, served: object, chosen: str,
                usage: Mapping[str, Any]) -> Completion:
        """Anthropic's ``input_tokens`` are the uncached ones; the completion counts all."""
        written = token_count(usage, "cache_creation_input_tokens")
        read = token_count(usage, "cache_read_input_tokens")
        return self._completion(
            text, served, chosen, input_tokens=token_count(usage, "input_tokens") + written + read,
            output_tokens=token_count(usage, "output_tokens"),
            cache_write_tokens=written, cache_read_tokens=read)


def _sampling(options: CallOptions) -> dict[str, Any]:
    """``temperature``, ``top_p`` and ``top_k`` as body fields (``extra_body``): top-level
    fields of the Messages API that the SDK's typed arguments lack. Anthropic's temperature
    runs 0 to 1; a model that takes none (or not two of them together) answers 400."""
    if options.temperature is not None and options.temperature > 1.0:
        raise LMError(f"temperature {options.temperature:g} is outside Anthropic's range "
                      "(0 to 1)")
    fields = {"temperature": options.temperature, "top_p": options.top_p,
              "top_k": options.top_k}
    chosen = {name: value for name, value in fields.items() if value is not None}
    return {"extra_body": chosen} if chosen else {}


def _message(turn: Turn, *, cache: bool) -> dict[str, Any]:
    if not cache:
        return {"role": turn.role, "content": turn.text}
    return {"role": turn.role,
            "content": [{"type": "text", "text": turn.text, "cache_control": CACHE_MARK}]}


def _fields(usage: object) -> dict[str, Any]:
    names = ("input_tokens", "output_tokens", "cache_creation_input_tokens",
             "cache_read_input_tokens")
    return {name: getattr(usage, name, None) for name in names}
