"""The agent's reserved context string: made (pages touched) before the file is written,
then filled from it; it must come out equal to what decoding the file would give, and give
way to decoding whenever it cannot be used (agent/context_reserve.py)."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from rlmbox.sandboxes.agent import context_file, context_reserve

PAGE = 4096


@pytest.mark.parametrize("chars", [1, PAGE - 1, PAGE, PAGE + 1, 3 * PAGE + 17, 1 << 20])
def test_a_reserved_string_filled_from_the_file_equals_the_text(tmp_path: Path,
                                                                chars: int) -> None:
    text = "".join(chr(32 + (i * 7) % 95) for i in range(chars))
    path = tmp_path / "context.txt"
    path.write_bytes(text.encode("ascii"))
    reserved = context_reserve.reserve(chars)
    assert reserved is not None
    loaded = context_file.load(str(path), "str", reserved=reserved)
    assert loaded == text
    assert loaded is reserved   # filled in place, not decoded afresh
    assert hash(loaded) == hash(text)
    assert loaded.isascii()
    assert len(loaded) == chars
    assert loaded[-1:] == text[-1:]
    assert loaded.rfind(text[-5:]) == chars - len(text[-5:])
    assert hashlib.sha256(loaded.encode()).digest() == hashlib.sha256(text.encode()).digest()


def test_a_reservation_of_another_size_is_not_used(tmp_path: Path) -> None:
    path = tmp_path / "context.txt"
    path.write_bytes(b"x" * 100)
    reserved = context_reserve.reserve(99)
    assert reserved is not None
    loaded = context_file.load(str(path), "str", reserved=reserved)
    assert loaded == "x" * 100
    assert loaded is not reserved


def test_a_json_context_does_not_take_a_reservation(tmp_path: Path) -> None:
    path = tmp_path / "context.json"
    path.write_bytes(b'{"a": [1, 2]}')
    reserved = context_reserve.reserve(len(path.read_bytes()))
    assert context_file.load(str(path), "json", reserved=reserved) == {"a": [1, 2]}


def test_reserving_nothing_or_a_negative_size_gives_nothing() -> None:
    assert context_reserve.reserve(0) is None
    assert context_reserve.reserve(-1) is None


def test_a_reservation_past_the_address_space_gives_nothing() -> None:
    assert context_reserve.reserve(sys.maxsize // 2) is None
