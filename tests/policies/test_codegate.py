"""The code gate: forbidden constructs and imports are refused with line and reason; the
transformed source runs under the guards (here in-process; end to end in test_e2e)."""

from __future__ import annotations

from typing import Any

import pytest

from rlmbox.errors import CodeRejected
from rlmbox.policies.codegate import transform
from rlmbox.policies.model import load_policy
from rlmbox.sandboxes.agent import restricted_guards

STRICT = load_policy("strict").code.allowed_imports


def run(code: str, allowed: frozenset[str] = STRICT) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    restricted_guards.install(namespace, allowed)
    exec(transform(code, allowed), namespace)  # noqa: S102
    return namespace


@pytest.mark.parametrize(("code", "line", "reason"), [
    ("import socket", 1, "import of 'socket' is not allowed"),
    ("x = 1\nimport os.path", 2, "import of 'os.path' is not allowed"),
    ("from subprocess import run", 1, "import of 'subprocess' is not allowed"),
    ("from . import x", 1, "relative imports are not allowed"),
    ("x = ().__class__", 1, '"__class__" is an invalid attribute name'),
    ("eval('1')", 1, "Eval calls are not allowed"),
    ("exec('1')", 1, "Exec calls are not allowed"),
    ("__import__('os')", 1, '"__import__" is an invalid variable name'),
    ("def f():\n    x = 1\n    def g():\n        nonlocal x", 4,
     "Nonlocal statements are not allowed"),
    ("x = (", 1, "syntax error"),
    ("x = 1\n*x", 2, "syntax error"),     # found by fuzz_codegate: a compile-time error
])
def test_rejections_name_line_and_reason(code: str, line: int, reason: str) -> None:
    with pytest.raises(CodeRejected) as info:
        transform(code, STRICT)
    assert info.value.line == line
    assert reason in info.value.reason
    assert str(info.value).startswith(f"line {line}: ")


def test_every_problem_is_listed() -> None:
    with pytest.raises(CodeRejected) as info:
        transform("import socket\nx = y.__dict__\nimport os", STRICT)
    assert [e.split(":")[0] for e in info.value.errors] == ["line 1", "line 2", "line 3"]


@pytest.mark.parametrize(("code", "error"), [
    ("getattr((), '__class__')", "private attribute"),
    ("'{0.__class__}'.format(1)", "str.format is not allowed"),
    ("str.format('{0.__class__}', 1)", "str.format is not allowed"),
    ("open('/etc/passwd')", "name 'open' is not defined"),
    ("import re\nre.compile = 3", "may not modify module"),
    ("import statistics\nstatistics.sys", "not on the import allowlist"),
])
def test_runtime_guards_stop_escapes(code: str, error: str) -> None:
    with pytest.raises((AttributeError, NameError, TypeError), match=error):
        run(code, STRICT | {"statistics"})


def test_ordinary_rlm_code_runs() -> None:
    ns = run("""
import re, json
from collections import Counter
class Acc:
    def __init__(self):
        self.items = []
acc = Acc()
acc.items.append(1)
totals = {}
totals['a'] = 2
n = 0
for i, (a, b) in enumerate([(1, 2), (3, 4)]):
    n += a * b
first, *rest = [1, 2, 3]
words = Counter(re.findall('[a-z]+', 'a b a')).most_common(1)
print('n =', n)
out = json.dumps({'n': n})
""")
    assert (ns["n"], ns["rest"], ns["words"], ns["out"]) == (14, [2, 3], [("a", 2)], '{"n": 14}')
    assert ns["acc"].items == [1]


def test_guarded_import_refuses_at_runtime_too() -> None:
    """Even a cell that skipped the host check cannot import outside the allowlist."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    restricted_guards.install(namespace, frozenset({"re"}))
    with pytest.raises(ImportError, match="'socket' is not allowed"):
        exec("import socket", namespace)  # noqa: S102


def test_huge_cell_is_refused() -> None:
    with pytest.raises(CodeRejected, match="longer than"):
        transform("x = 1\n" * 300_000, STRICT)


def test_deep_nesting_is_refused_not_crashing() -> None:
    with pytest.raises(CodeRejected):
        transform("x = " + "(" * 5000 + ")" * 5000, STRICT)


def test_brackets_past_the_parsers_stack_are_refused_not_a_memory_error() -> None:
    """Found by the fuzz pass (fuzz/fuzz_codegate.py): unclosed braces deep enough make
    CPython's parser raise MemoryError (its stack limit), not SyntaxError."""
    with pytest.raises(CodeRejected, match="nests too deeply"):
        transform("e=e=r,=b=E=rE" + "{" * 300, STRICT)
