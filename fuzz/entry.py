"""The command line every seeded atheris target shares: ``--make-corpus DIR`` writes the
target's seeds, anything else is handed to atheris to fuzz ``TestOneInput``.

Imported only under ``__main__`` (the regression replay imports targets as modules and
never fuzzes).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import atheris


def run(test_one_input: Callable[[bytes], None], make_corpus: Callable[[Path], None]) -> None:
    if sys.argv[1:2] == ["--make-corpus"] and len(sys.argv) == 3:
        make_corpus(Path(sys.argv[2]))
    else:
        atheris.Setup(sys.argv, test_one_input)
        atheris.Fuzz()
