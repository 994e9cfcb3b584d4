"""The code gate: RestrictedPython checks and rewrites each cell on the host.

Under ``code: restricted`` a cell is parsed, refused if it uses a forbidden construct
(names or attributes starting with ``_``, ``exec``/``eval``, ``global``, ...) or imports a
module outside the allowlist, and otherwise rewritten so that attribute access, item
access, iteration, writes and ``print`` go through guard functions. The rewritten tree is
compiled here, at the user's own line numbers (never unparsed back to source), and the code
object is what the sandbox runs, with the guards of ``rlmbox.sandboxes.agent.restricted_guards``.

This is defence in depth, never the only boundary: Python-level restrictions have a long
history of escapes, so the sandbox around the code must hold on its own.
"""

from __future__ import annotations

import ast
import re
import types

from RestrictedPython.transformer import RestrictingNodeTransformer

from rlmbox.errors import CodeRejected

MAX_CELL_CHARS = 1024 * 1024
_LINE = re.compile(r"^Line (\d+): (.*)$", re.DOTALL)


def module_allowed(module: str, allowed_imports: frozenset[str]) -> bool:
    """True for an allowlisted module or a submodule of one (``collections.abc``)."""
    return any(module == name or module.startswith(name + ".") for name in allowed_imports)


def _import_errors(tree: ast.AST, allowed_imports: frozenset[str]) -> list[tuple[int, str]]:
    errors: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                errors.append((node.lineno, "relative imports are not allowed"))
                continue
            modules = [node.module or ""]
        else:
            continue
        errors += [(node.lineno, f"import of '{m}' is not allowed (allowlist: "
                    f"{', '.join(sorted(allowed_imports)) or 'empty'})")
                   for m in modules if not module_allowed(m, allowed_imports)]
    return errors


def _annotations(tree: ast.AST) -> list[ast.expr]:
    found: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg | ast.AnnAssign) and node.annotation is not None:
            found.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns:
            found.append(node.returns)
    return found


def _string_annotation_errors(tree: ast.AST) -> list[tuple[int, str]]:
    """A string inside an annotation is code that ``typing.get_type_hints`` (and
    ``functools.singledispatch``) would evaluate later, unguarded: refused."""
    return [(node.lineno, "string annotations are not allowed (typing evaluates them as "
             "code); write the type itself")
            for annotation in _annotations(tree) for node in ast.walk(annotation)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def _split(message: str) -> tuple[int | None, str]:
    match = _LINE.match(message)
    if match is None:
        return None, message
    return int(match.group(1)), match.group(2).rstrip(".")


def transform(code: str, allowed_imports: frozenset[str]) -> types.CodeType:
    """Checks one cell and returns the restricted code object the sandbox must run.

    Raises:
        CodeRejected: with the first offending ``line`` and its ``reason``; ``errors``
            lists every problem found.
    """
    if len(code) > MAX_CELL_CHARS:
        raise CodeRejected(f"cell is longer than {MAX_CELL_CHARS} characters",
                           line=None, reason="cell too large")
    try:
        tree = ast.parse(code, "<cell>", "exec")
    except (SyntaxError, ValueError) as exc:   # ValueError: NUL bytes in source
        line = getattr(exc, "lineno", None)
        reason = f"syntax error: {getattr(exc, 'msg', exc)}"
        raise CodeRejected(f"line {line}: {reason}", line=line, reason=reason,
                           errors=[f"line {line}: {reason}"]) from exc
    except (RecursionError, MemoryError) as exc:   # MemoryError: the parser's stack limit
        raise CodeRejected("cell nests too deeply", reason="nesting too deep") from exc
    found = _import_errors(tree, allowed_imports) + _string_annotation_errors(tree)
    messages: list[str] = []
    try:
        RestrictingNodeTransformer(messages, [], {}).visit(tree)
    except RecursionError as exc:
        raise CodeRejected("cell nests too deeply", reason="nesting too deep") from exc
    found += [(line or 0, reason) for line, reason in map(_split, messages)]
    if found:
        found.sort()
        line, reason = found[0]
        raise CodeRejected(f"line {line}: {reason}", line=line or None, reason=reason,
                           errors=[f"line {n}: {r}" for n, r in found])
    try:   # some errors only show at compile time ("*x" alone, "return" outside a def)
        return compile(ast.fix_missing_locations(tree), "<cell>", "exec", dont_inherit=True)
    except SyntaxError as exc:
        reason = f"syntax error: {exc.msg}"
        raise CodeRejected(f"line {exc.lineno}: {reason}", line=exc.lineno, reason=reason,
                           errors=[f"line {exc.lineno}: {reason}"]) from exc
