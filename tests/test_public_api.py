"""The public namespace is exactly what README documents; layering holds."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import rlmbox

PACKAGE = Path(rlmbox.__file__).parent
BUNDLE = ("agent.py", "protocol.py", "confine.py", "gated_context.py", "restricted_guards.py")


def test_exported_members_are_pinned() -> None:
    assert sorted(rlmbox.__all__) == sorted([
        "Completion", "ExecResult", "IsolationProperty", "LMProvider", "Policy", "Runtime",
        "ScriptedLM", "AnthropicLM", "OpenAICompatibleLM", "Session", "load_policy",
        "AuditError", "AuditRecordInvalid", "AuditWriteError", "BudgetExceeded",
        "CodeRejected", "IsolationUnavailable", "LMError", "LMRequestFailed",
        "PolicyDenied", "PolicyError", "ProtocolError",
        "RlmboxError", "SandboxCrashed", "SandboxError", "SandboxUnavailable",
        "SessionClosed", "SessionError", "SessionKilled"])
    for name in rlmbox.__all__:
        assert hasattr(rlmbox, name)


def test_every_error_derives_from_the_root() -> None:
    from rlmbox import errors

    for name in dir(errors):
        value = getattr(errors, name)
        if isinstance(value, type) and issubclass(value, Exception) and \
                value.__module__ == errors.__name__:
            assert issubclass(value, errors.RlmboxError), name


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_sandboxes_never_import_runtime() -> None:
    for path in (PACKAGE / "sandboxes").rglob("*.py"):
        bad = {n for n in _imports(path) if n.startswith("rlmbox.runtime")}
        assert not bad, f"{path.name} imports {bad}"


def test_agent_bundle_imports_only_stdlib_and_itself() -> None:
    allowed_local = {name.removesuffix(".py") for name in BUNDLE} | {
        "rlmbox.sandboxes", "rlmbox.sandboxes.protocol"}
    for name in BUNDLE:
        path = PACKAGE / "sandboxes" / name
        if not path.exists():
            continue
        for module in _imports(path):
            top = module.split(".")[0]
            assert module in allowed_local or top in sys.stdlib_module_names or \
                top == "__future__", f"{name} imports {module}"


def test_policies_and_audit_do_not_import_runtime_sessions() -> None:
    for layer in ("policies", "audit"):
        for path in (PACKAGE / layer).rglob("*.py"):
            bad = {n for n in _imports(path)
                   if n.startswith(("rlmbox.runtime.session", "rlmbox.runtime.runtime"))}
            assert not bad, f"{layer}/{path.name} imports {bad}"


def test_http_providers_load_on_first_use() -> None:
    """``import rlmbox`` does not pay for httpx; the providers still resolve by name."""
    probe = ("import sys, rlmbox\n"
             "print('httpx' in sys.modules)\n"
             "print(rlmbox.AnthropicLM.__name__, rlmbox.OpenAICompatibleLM.__name__)\n"
             "print('httpx' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split("\n")[:3] == ["False", "AnthropicLM OpenAICompatibleLM", "True"]
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        rlmbox.Nope  # noqa: B018
