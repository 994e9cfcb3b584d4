"""The LM provider seam: one synchronous completion call, brokered on the host.

API keys live in provider objects on the host and never enter a sandbox; the sandbox
only ever sees the completion text.

Every provider answers a plain prompt (:meth:`LMProvider.complete`). Providers that can
do more (a system prompt, a conversation whose stable prefix the API may cache, per-call
parameters, streamed text, counting tokens before the call) also implement
:class:`ConversationLM`; :func:`respond` uses that when it is there and flattens the
request to one prompt otherwise, so the RLM loop needs no branch per provider.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol, TypeGuard, runtime_checkable

from rlmbox.errors import LMError

TextSink = Callable[[str], None]


@dataclass(frozen=True)
class Completion:
    """One completion and what it cost, as the provider measured it.

    ``input_tokens`` counts every input token, cached or not; ``cache_write_tokens`` and
    ``cache_read_tokens`` say how many of them were written to or read from the provider's
    prompt cache (priced at their own rates in ``cost_usd``).
    """

    text: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0


@dataclass(frozen=True)
class CallOptions:
    """Per-call parameters; None leaves the provider's (or the API's) default.

    ``top_k`` is not part of OpenAI's API: an OpenAI-compatible server that does not know
    it (OpenAI itself) answers 400; vLLM, llama.cpp and Ollama take it.
    """

    max_tokens: int | None = None
    temperature: float | None = None
    stop: tuple[str, ...] = ()
    top_p: float | None = None
    top_k: int | None = None

    def __post_init__(self) -> None:
        if self.max_tokens is not None and self.max_tokens < 1:
            raise LMError("max_tokens must be at least 1")
        if self.temperature is not None and not 0.0 <= self.temperature <= 2.0:
            raise LMError("temperature must be between 0 and 2")
        if self.top_p is not None and not 0.0 <= self.top_p <= 1.0:
            raise LMError("top_p must be between 0 and 1")
        if self.top_k is not None and self.top_k < 1:
            raise LMError("top_k must be at least 1")

    def capped(self, max_tokens: int | None) -> CallOptions:
        """These options with ``max_tokens`` at most ``max_tokens`` (a policy's cap); an
        unset ``max_tokens`` becomes the cap, since the provider's default may exceed it."""
        if max_tokens is None or (self.max_tokens is not None and self.max_tokens <= max_tokens):
            return self
        return replace(self, max_tokens=max_tokens)


@dataclass(frozen=True)
class Turn:
    """One message of a conversation."""

    role: Literal["user", "assistant"]
    text: str


@dataclass(frozen=True)
class LMRequest:
    """A conversation for a provider: a system prompt and turns, ending with the user's.

    ``cache_prefix`` asks the provider to mark everything before the last turn (and the
    last turn itself, so the next request can read it) as a cacheable prefix: the RLM
    root loop resends a growing history every turn.
    """

    turns: tuple[Turn, ...]
    system: str | None = None
    options: CallOptions = field(default_factory=CallOptions)
    cache_prefix: bool = False

    def __post_init__(self) -> None:
        if not self.turns or self.turns[-1].role != "user":
            raise LMError("a request must end with a user turn")

    def flattened(self) -> str:
        """The request as one prompt, for providers that take only text."""
        parts = [self.system] if self.system else []
        parts.extend(turn.text for turn in self.turns)
        return "\n\n".join(parts)


class LMProvider(Protocol):
    """Anything that turns a prompt into a completion.

    ``model`` is the model a completion uses when the caller names none: the host binds
    it into the call's arguments before the policy decides, so a rule on ``model`` sees it.
    """

    name: str
    model: str

    def complete(self, prompt: str, *, model: str | None = None) -> Completion: ...


@runtime_checkable
class ConversationLM(Protocol):
    """A provider that takes a whole :class:`LMRequest` (the SDK-based ones)."""

    name: str
    model: str

    def complete(self, prompt: str, *, model: str | None = None) -> Completion: ...

    def respond(self, request: LMRequest, *, model: str | None = None,
                on_text: TextSink | None = None) -> Completion:
        """The completion; with ``on_text`` the reply is streamed to it as it comes."""
        ...

    def count_input_tokens(self, request: LMRequest, *, model: str | None = None) -> int | None:
        """The request's input tokens as the API counts them, or None if it cannot."""
        ...


#: what ``isinstance(lm, ConversationLM)`` looks up, read directly: that check costs ~15 µs
#: on every LM call through typing's protocol machinery
_CONVERSATION_MEMBERS = ("name", "model", "complete", "respond", "count_input_tokens")


def _converses(lm: LMProvider) -> TypeGuard[ConversationLM]:
    """Whether ``lm`` takes whole requests. Asked of the object on every call, never
    cached by class: a forwarding wrapper's kind is its inner provider's."""
    return all(hasattr(lm, member) for member in _CONVERSATION_MEMBERS)


def respond(lm: LMProvider, request: LMRequest, *, model: str | None = None,
            on_text: TextSink | None = None) -> Completion:
    """``lm``'s completion of ``request``; a text-only provider gets it flattened (and
    ``on_text`` the whole reply at once)."""
    if _converses(lm):
        return lm.respond(request, model=model, on_text=on_text)
    completion = lm.complete(request.flattened(), model=model)
    if on_text is not None:
        on_text(completion.text)
    return completion


def count_input_tokens(lm: LMProvider, request: LMRequest, *,
                       model: str | None = None) -> int | None:
    """The input tokens ``lm`` counts for ``request`` before sending it, else None."""
    if _converses(lm):
        return lm.count_input_tokens(request, model=model)
    return None


def estimate_tokens(text: str) -> int:
    """A provider-independent estimate (4 characters a token) for offline providers."""
    return max(1, (len(text) + 3) // 4)
