"""Atheris target: the code gate either returns a compiled cell or raises CodeRejected;
and the compiled cell never imports outside the allowlist.

    python fuzz/fuzz_codegate.py -max_total_time=60 fuzz/corpus/codegate
    python fuzz/fuzz_codegate.py --make-corpus fuzz/corpus/codegate
"""

from __future__ import annotations

import dis
import types
from collections.abc import Iterator
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from rlmbox.errors import CodeRejected
    from rlmbox.policies.codegate import module_allowed, transform

ALLOWED = frozenset({"re", "json", "math", "collections"})


def TestOneInput(data: bytes) -> None:  # the name atheris looks for
    code = data.decode("utf-8", "replace")
    try:
        compiled = transform(code, ALLOWED)
    except CodeRejected as exc:
        if not exc.reason:
            raise AssertionError("CodeRejected without a reason") from exc
        return
    imported = list(_imported_modules(compiled))
    if not all(module_allowed(n, ALLOWED) for n in imported):
        raise AssertionError(f"the compiled cell imports {imported}")


def _imported_modules(code: types.CodeType) -> Iterator[str]:
    """Every module an IMPORT_NAME in ``code`` or its nested code objects names."""
    for instruction in dis.get_instructions(code):
        if instruction.opname == "IMPORT_NAME":
            yield str(instruction.argval)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _imported_modules(const)


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
    from entry import run  # fuzz/ is sys.path[0] when run as a script

    run(TestOneInput, make_corpus)
