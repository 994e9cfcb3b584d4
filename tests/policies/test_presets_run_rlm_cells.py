"""Typical RLM cells run under every preset, and errors point at the user's own lines.

The corpus is what an RLM's root model writes (slicing, comprehensions, f-strings, regex,
str methods on ``context``, batched sub-calls). Under ``strict`` it goes through the code
gate, which once turned ``x[1:3]`` into ``_getitem_(x, 1:3)`` by unparsing its rewrite.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rlmbox import Runtime, ScriptedLM
from rlmbox.runtime.session import Session

PRESETS = ("strict", "default", "dev")
CONTEXT = "alpha line one\nbeta line two\nThe secret code is 7341.\ngamma line four\n"

# (cell, expected stdout); cells run in order in one session
CORPUS: list[tuple[str, str]] = [
    ('x = "hello"', ""),
    ("print(x[1:3])", "el\n"),
    ("print(x[::-1], x[-2:], x[:1])", "olleh lo h\n"),
    ("squares = [i * i for i in range(5) if i % 2 == 0]\nprint(squares)", "[0, 4, 16]\n"),
    ("pairs = {k: v for k, v in zip('ab', (1, 2))}\nprint(pairs)", "{'a': 1, 'b': 2}\n"),
    ("n = 3\nprint(f'{n:>3}|{x!r}|{n * 2}')", "  3|'hello'|6\n"),
    ("import re\nprint(re.findall(r'\\d+', 'a1b22c333'))", "['1', '22', '333']\n"),
    ("text = context[0:len(context)]\nprint(text.splitlines()[2].upper())",
     "THE SECRET CODE IS 7341.\n"),
    ("print(context.count(\"line\"), context.splitlines()[0])", "3 alpha line one\n"),
    ("words = context[:200].split()\nprint(len(words), words[0])", "14 alpha\n"),
    ("chunks = [context[i:i + 20] for i in range(0, 40, 20)]\nprint(len(chunks))", "2\n"),
    ("replies = llm_query_batched(['a', 'b'])\nprint(replies)", "['sub', 'sub']\n"),
    ("print(llm_query('q'))", "sub\n"),
    ("total = sum(len(c) for c in chunks)\nprint(total)", "40\n"),
]


@pytest.fixture(params=PRESETS)
def session(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Session]:
    with Runtime(request.param, lm=ScriptedLM(default="sub"), audit_dir=tmp_path / "audit",
                 pool_size=0) as rt, rt.session(context=CONTEXT) as s:
        yield s


def test_the_corpus_runs_under_every_preset(session: Session) -> None:
    for cell, expected in CORPUS:
        result = session.exec(cell)
        assert result.status == "ok", (cell, result.error)
        assert result.stdout == expected, cell


def test_a_runtime_error_names_the_users_line(session: Session) -> None:
    result = session.exec("a = 1\nb = [1, 2]\nc = b[5]\n")
    assert result.status == "error"
    assert 'line 3' in (result.error or "")
    assert "IndexError" in (result.error or "")


def test_a_syntax_error_names_the_users_line(session: Session) -> None:
    result = session.exec("a = 1\nb = (\n")
    assert result.status == "error"
    assert "line 2" in (result.error or "")


def test_the_agents_own_frames_are_not_in_a_traceback(session: Session) -> None:
    result = session.exec("x = 'abc'\ny = x.no_such_method()\n")
    assert result.status == "error"
    assert "line 2" in (result.error or "")
    assert "/rlmbox/agent/" not in (result.error or "")
    assert "restricted_guards" not in (result.error or "")
