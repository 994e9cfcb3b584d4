"""``respond`` tells a text-only provider from a conversation one, on every call.

The structural check behind ``isinstance(lm, ConversationLM)`` costs ~15 µs on every
``llm_query`` and root-model turn; the same members are read directly instead, from the
object (not its class: a forwarding wrapper's kind is its inner provider's).
"""

from __future__ import annotations

import typing
from typing import Any

from rlmbox.lm.base import (
    _CONVERSATION_MEMBERS,
    Completion,
    ConversationLM,
    LMRequest,
    Turn,
    _converses,
    count_input_tokens,
    respond,
)


class _TextOnly:
    name = "text"
    model = "m"

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def complete(self, prompt: str, *, model: str | None = None) -> Completion:
        self.prompts.append(prompt)
        return Completion(text="plain", model=model or self.model)


class _Conversing(_TextOnly):
    name = "conversing"

    def respond(self, request: LMRequest, *, model: str | None = None,
                on_text: Any = None) -> Completion:
        return Completion(text=f"turns={len(request.turns)}", model=model or self.model)

    def count_input_tokens(self, request: LMRequest, *, model: str | None = None) -> int:
        return 7


_REQUEST = LMRequest((Turn("user", "hi"),), system="be brief")


def test_each_kind_is_answered_its_own_way() -> None:
    """A text-only provider gets the flattened prompt and cannot count; a conversation
    provider gets the request and counts."""
    text = _TextOnly()
    assert respond(text, _REQUEST).text == "plain"
    assert text.prompts == [_REQUEST.flattened()]
    assert count_input_tokens(text, _REQUEST) is None
    assert respond(_Conversing(), _REQUEST).text == "turns=1"
    assert count_input_tokens(_Conversing(), _REQUEST) == 7


class _Forwarding:
    """A wrapper that forwards every attribute to the provider it wraps (as logging or
    retry wrappers do): its kind is its inner provider's, which differs per instance."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_a_forwarding_wrapper_is_asked_per_instance() -> None:
    """The same wrapper class first around a text-only provider, then around a counting
    one: the second is counted and answered as a conversation (a kind cached per class
    skipped its count, and with it the input-token budget)."""
    assert count_input_tokens(_Forwarding(_TextOnly()), _REQUEST) is None
    assert count_input_tokens(_Forwarding(_Conversing()), _REQUEST) == 7
    assert respond(_Forwarding(_Conversing()), _REQUEST).text == "turns=1"
    assert respond(_Forwarding(_TextOnly()), _REQUEST).text == "plain"


def _protocol_members(protocol: type) -> set[str]:
    """What typing's instance check looks up on a runtime-checkable protocol."""
    members: set[str] = getattr(typing, "_get_protocol_attrs")(protocol)  # noqa: B009
    return members


def test_the_direct_check_reads_the_protocols_members() -> None:
    """The kind is read without typing's slow instance check, from the same members that
    check looks up: the list is the protocol's, and both agree on every provider here."""
    assert sorted(_CONVERSATION_MEMBERS) == sorted(_protocol_members(ConversationLM))
    providers: list[Any] = [_TextOnly(), _Conversing(), _Forwarding(_TextOnly()),
                            _Forwarding(_Conversing()), object()]
    for provider in providers:
        assert _converses(provider) == isinstance(provider, ConversationLM), provider
