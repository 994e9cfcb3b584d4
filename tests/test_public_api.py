"""The public namespace is exactly what README documents (layering: test_layering.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import rlmbox

PACKAGE = Path(rlmbox.__file__).parent


def test_exported_members_are_pinned() -> None:
    assert sorted(rlmbox.__all__) == sorted([
        "Completion", "ExecResult", "IsolationProperty", "LMProvider", "Policy", "Runtime",
        "ScriptedLM", "AnthropicLM", "OpenAICompatibleLM", "Session", "load_policy",
        "AuditError", "AuditRecordInvalid", "AuditWriteError", "BudgetExceeded",
        "CodeRejected", "FileTransferRefused", "IsolationUnavailable", "LMError", "LMRequestFailed",
        "PolicyDenied", "PolicyError", "ProtocolError",
        "RlmboxError", "SandboxCrashed", "SandboxError", "SandboxUnavailable",
        "SessionClosed", "SessionError", "SessionKilled", "ToolError"])
    for name in rlmbox.__all__:
        assert hasattr(rlmbox, name)


def test_every_error_derives_from_the_root() -> None:
    from rlmbox import errors

    for name in dir(errors):
        value = getattr(errors, name)
        if isinstance(value, type) and issubclass(value, Exception) and \
                value.__module__ == errors.__name__:
            assert issubclass(value, errors.RlmboxError), name


def test_http_providers_load_on_first_use() -> None:
    """``import rlmbox`` imports neither SDK (nor their HTTP client); the providers still
    resolve by name, and then the SDKs are loaded."""
    loaded = "print([m in sys.modules for m in ('anthropic', 'openai', 'httpx2')])\n"
    probe = ("import sys, rlmbox\n" + loaded +
             "print(rlmbox.AnthropicLM.__name__, rlmbox.OpenAICompatibleLM.__name__)\n"
             + loaded)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split("\n")[:3] == ["[False, False, False]",
                                            "AnthropicLM OpenAICompatibleLM",
                                            "[True, True, True]"]
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        rlmbox.Nope  # noqa: B018
