"""The agent's mapped context string: its characters are the staged file's read-only
pages; it must come out equal to what decoding the file would give, never be freed, and
give way to decoding whenever it cannot be used (agent/context_map.py)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlmbox.sandboxes.agent import context_file

PAGE = 4096


def _text(chars: int) -> str:
    return "".join(chr(32 + (i * 7) % 95) for i in range(chars))


def _inside_mapping(text: str, path: Path) -> bool:
    """Whether ``text``'s first character lies in a mapping of ``path``."""
    address = id(text) + sys.getsizeof("") - 1
    for line in Path("/proc/self/maps").read_text().splitlines():
        span, *rest = line.split(maxsplit=5)
        low, high = (int(x, 16) for x in span.split("-"))
        if low <= address < high:
            return len(rest) == 5 and rest[4] == str(path)
    return False


@pytest.mark.parametrize("chars", [1, PAGE - 1, PAGE, PAGE + 1, 3 * PAGE + 17, 1 << 20])
def test_an_announced_ascii_file_is_mapped_and_equals_the_text(tmp_path: Path,
                                                              chars: int) -> None:
    text = _text(chars)
    path = tmp_path / "context.txt"
    path.write_bytes(text.encode("ascii"))
    loaded = context_file.load(str(path), "str", ascii_chars=chars)
    assert _inside_mapping(loaded, path)   # the file's pages, not a copy
    assert loaded == text
    assert hash(loaded) == hash(text)
    assert loaded.isascii()
    assert len(loaded) == chars
    assert loaded[-1:] == text[-1:]
    assert loaded.rfind(text[-5:]) == chars - len(text[-5:])
    assert hashlib.sha256(loaded.encode()).digest() == hashlib.sha256(text.encode()).digest()
    assert (loaded + "!")[:-1] == text


def test_a_file_of_another_size_is_decoded(tmp_path: Path) -> None:
    path = tmp_path / "context.txt"
    path.write_bytes(b"x" * 100)
    loaded = context_file.load(str(path), "str", ascii_chars=99)
    assert loaded == "x" * 100
    assert not _inside_mapping(loaded, path)


def test_a_json_context_is_not_mapped(tmp_path: Path) -> None:
    path = tmp_path / "context.json"
    path.write_bytes(b'{"a": [1, 2]}')
    assert context_file.load(str(path), "json", ascii_chars=len(path.read_bytes())) == {
        "a": [1, 2]}


def test_an_empty_file_is_not_mapped(tmp_path: Path) -> None:
    path = tmp_path / "context.txt"
    path.write_bytes(b"")
    assert context_file.load(str(path), "str", ascii_chars=0) == ""


_IN_CHILD = """
import ctypes, gc, sys
from rlmbox.sandboxes.agent import context_file
text = context_file.load(sys.argv[1], "str", ascii_chars=int(sys.argv[2]))
first = id(text) + sys.getsizeof("") - 1
if sys.argv[3] == "drop":
    text += "!"   # not resized in place: the allocator never owned it
    del text
    gc.collect()
    ctypes.string_at(first, 5)   # still mapped: never freed
    print("alive")
else:
    ctypes.memset(first, ord("!"), 1)
    print("written")
"""


def _child(path: Path, chars: int, action: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _IN_CHILD, str(path), str(chars), action],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "PYTHONPATH": str(Path.cwd())})


def test_dropping_every_reference_to_the_mapped_string_frees_nothing(tmp_path: Path) -> None:
    path = tmp_path / "context.txt"
    path.write_bytes(b"a" * (PAGE + 3))
    run = _child(path, PAGE + 3, "drop")
    assert (run.returncode, run.stdout) == (0, "alive\n"), run.stderr


def test_writing_into_the_mapped_string_faults_and_leaves_the_file(tmp_path: Path) -> None:
    path = tmp_path / "context.txt"
    path.write_bytes(b"a" * (PAGE + 3))
    run = _child(path, PAGE + 3, "write")
    assert run.returncode == -11   # SIGSEGV
    assert "written" not in run.stdout
    assert path.read_bytes() == b"a" * (PAGE + 3)
