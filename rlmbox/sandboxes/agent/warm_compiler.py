"""Pages in the parser and compiler before a session, so its first cell does not.

The agent imports itself from bytecode, so a session's first ``compile`` was the
interpreter's first: it touched the parser's and compiler's pages for the first time
(46 page faults, ~0.7 ms on the nested VM that measured it, where a fault costs ~15 µs).
Compiling a throwaway cell before the agent says ready moves that out of every session: a
pooled sandbox pays it while it waits, a cold start before its first cell. The sample is a
constant, compiled and dropped, never run: it binds nothing, so no state reaches the
session that gets the sandbox.
"""

import contextlib

_SAMPLE = '''
import os, json
from collections import Counter as C
def f(a, b=1, *args, key: str = "k", **kw) -> int:
    """doc"""
    global g
    total = 0
    for i, x in enumerate(args):
        if x and not a or b is None:
            total += x ** 2 % 3 // 1
        elif x in kw:
            continue
        else:
            break
    while total > 0:
        total -= 1
    try:
        with open(key) as fh, os.scandir(".") as it:
            data = fh.read()[1:-1:2]
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"{exc!r:>10} {a=}") from exc
    finally:
        pass
    return total
class K(object):
    attr: int = 0
    @property
    def p(self):
        return [y for y in range(3) if y], {y: y for y in "ab"}, {1, 2}, (yield 1)
lines = [line.strip() for line in "a\\nb".splitlines()]
squares = list(map(lambda n: n * n, range(10)))
first, *rest = sorted(lines, key=len, reverse=True)
assert first, "empty"
del rest
print(len(lines), -1.5e3, 0x1F, b"x", None, True, ..., sep=", ")
'''


def warm_compiler() -> None:
    """Compiles the sample once and drops it; an image's older Python that cannot read
    some of it is only warmed less (a warm-up never stops the agent)."""
    with contextlib.suppress(SyntaxError):
        compile(_SAMPLE, "<warm-up>", "exec")
