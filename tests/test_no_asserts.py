"""No ``assert`` statement in the package: ``python -O`` removes them, so a check that
matters must be an ``if`` that raises. The allowlist names each exception with its reason."""

from __future__ import annotations

import ast
from pathlib import Path

import rlmbox

PACKAGE = Path(rlmbox.__file__).parent

# path (relative to the package) -> why its asserts may stay for now (none left)
ALLOWED: dict[str, str] = {}


def _asserts(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(), str(path))
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Assert)]


def test_no_assert_statements_in_the_package() -> None:
    """Every ``assert`` in rlmbox/ outside the allowlist is a failure, named by line."""
    found = {
        f"{path.relative_to(PACKAGE)}:{line}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if str(path.relative_to(PACKAGE)) not in ALLOWED
        for line in _asserts(path)}
    assert not found, f"assert statements in production code: {sorted(found)}"


def test_the_allowlist_names_only_files_that_still_assert() -> None:
    """An allowlisted file that no longer asserts leaves the list, so it cannot regrow."""
    stale = [name for name in ALLOWED if not _asserts(PACKAGE / name)]
    assert not stale, f"remove from ALLOWED: {stale}"
