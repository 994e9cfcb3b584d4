"""A cell that edits its ``__builtins__`` changes only its own copy: the next cell starts
from the builtins the session began with, and the agent (which shares the process) keeps
working. DSPy's interpreters promise the same for their globals."""

from __future__ import annotations

from rlmbox.runtime.runtime import Runtime


def test_a_cell_that_breaks_its_builtins_breaks_only_itself(runtime: Runtime) -> None:
    with runtime.session() as s:
        edited = s.exec("__builtins__['len'] = None\n__builtins__['print'] = None")
        after = s.exec("print(len([1, 2]))")
    assert edited.status == "ok", edited.error
    assert after.status == "ok", after.error
    assert after.stdout == "2\n"


def test_a_function_defined_where_builtins_broke_works_in_the_next_cell(
        runtime: Runtime) -> None:
    """A function keeps the builtins of the cell that defined it: they are repaired too."""
    with runtime.session() as s:
        s.exec("def count(xs):\n    return len(xs)\n__builtins__['len'] = None")
        after = s.exec("print(count([1, 2]), len([1]))")
    assert after.stdout == "2 1\n", after.error
