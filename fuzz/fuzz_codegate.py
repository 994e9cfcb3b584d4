"""Atheris target: the code gate either returns source that compiles or raises
CodeRejected; and returned source never imports outside the allowlist.

    python fuzz/fuzz_codegate.py -max_total_time=60 fuzz/corpus/codegate
    python fuzz/fuzz_codegate.py --make-corpus fuzz/corpus/codegate
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from rlmbox.errors import CodeRejected
    from rlmbox.policies.codegate import module_allowed, transform

ALLOWED = frozenset({"re", "json", "math", "collections"})


def TestOneInput(data: bytes) -> None:  # the name atheris looks for
    code = data.decode("utf-8", "replace")
    try:
        source = transform(code, ALLOWED)
    except CodeRejected as exc:
        if not exc.reason:
            raise AssertionError("CodeRejected without a reason") from exc
        return
    tree = ast.parse(source)   # must be valid Python
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        if not all(module_allowed(n, ALLOWED) for n in names):
            raise AssertionError(f"transformed source imports {names}")
    compile(source, "<cell>", "exec")


def make_corpus(target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    seeds = {
        "ok.py": "import re\nx = [m.group() for m in re.finditer('a', 'banana')]\nprint(x)\n",
        "socket.py": "import socket\n",
        "dunder.py": "().__class__.__base__.__subclasses__()\n",
        "format.py": "'{0.__class__}'.format(1)\n",
        "class.py": "class A:\n    def __init__(self):\n        self.v = 1\nA().v\n",
        "unpack.py": "for a, (b, *c) in [(1, (2, 3, 4))]:\n    print(a, b, c)\n",
    }
    for name, text in seeds.items():
        (target / name).write_text(text)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--make-corpus"]:
        make_corpus(Path(sys.argv[2]))
    else:
        atheris.Setup(sys.argv, TestOneInput)
        atheris.Fuzz()
