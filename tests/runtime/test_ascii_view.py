"""The host writes a large ASCII context from the string's own characters; the view
must hold exactly its UTF-8 bytes, and anything else must be encoded (runtime/ascii_view.py)."""

from __future__ import annotations

import pytest

from rlmbox.runtime.ascii_view import ascii_view


@pytest.mark.parametrize("chars", [1, 63, 64, 65, 4095, 4096, 4097, 1 << 20])
def test_the_view_of_an_ascii_str_is_its_utf8(chars: int) -> None:
    text = "".join(chr(i % 128) for i in range(chars))
    view = ascii_view(text)
    assert view is not None
    assert view.readonly
    assert bytes(view) == text.encode("utf-8")


class _Text(str):
    __slots__ = ()


@pytest.mark.parametrize("text", ["", "caf\u00e9" * 100, "\U0001f600" * 100,
                                  _Text("plain" * 100)],
                         ids=["empty", "latin-1", "astral", "subclass"])
def test_anything_but_a_non_empty_exact_ascii_str_has_no_view(text: str) -> None:
    assert ascii_view(text) is None
