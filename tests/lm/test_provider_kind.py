"""``respond`` tells a text-only provider from a conversation one by its class, once.

The structural check behind ``isinstance(lm, ConversationLM)`` walks the protocol's
members on every call (about 30 µs here, on every ``llm_query`` and root-model turn);
a provider's kind is a property of its class, so it is read once per class.
"""

from __future__ import annotations

import typing
from typing import Any

import pytest

from rlmbox.lm.base import Completion, LMRequest, Turn, count_input_tokens, respond


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


def test_the_structural_check_runs_once_per_class(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many calls, on new instances of the same two classes too, check each class once."""
    meta = type(typing.Protocol)
    checked: list[type] = []
    original: Any = meta.__instancecheck__

    def counting(cls: Any, instance: Any) -> bool:
        checked.append(type(instance))
        return bool(original(cls, instance))

    monkeypatch.setattr(meta, "__instancecheck__", counting)

    class Fresh(_TextOnly):
        pass

    class FreshConversing(_Conversing):
        pass

    for _ in range(50):
        assert respond(Fresh(), _REQUEST).text == "plain"
        assert count_input_tokens(FreshConversing(), _REQUEST) == 7
    assert checked.count(Fresh) <= 1
    assert checked.count(FreshConversing) <= 1
