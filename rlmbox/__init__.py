"""rlmbox: a secure execution runtime for Recursive Language Model REPLs.

The public API is what this module exports; everything else is private to the package.
The hosted LM providers load on first use (they import the ``anthropic`` or ``openai``
SDK, optional extras), so ``import rlmbox`` needs neither and stays fast.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from rlmbox.errors import (
    AuditError,
    AuditRecordInvalid,
    AuditWriteError,
    BudgetExceeded,
    CodeRejected,
    FileTransferRefused,
    IsolationUnavailable,
    LMError,
    LMRequestFailed,
    PolicyDenied,
    PolicyError,
    ProtocolError,
    RlmboxError,
    SandboxCrashed,
    SandboxError,
    SandboxUnavailable,
    SessionClosed,
    SessionError,
    SessionKilled,
    ToolError,
)
from rlmbox.lm.base import Completion, LMProvider
from rlmbox.lm.scripted import ScriptedLM
from rlmbox.policies.model import Policy, load_policy
from rlmbox.runtime.results import ExecResult
from rlmbox.runtime.runtime import Runtime
from rlmbox.runtime.session import Session
from rlmbox.sandboxes.base import IsolationProperty

if TYPE_CHECKING:
    from rlmbox.lm.anthropic import AnthropicLM
    from rlmbox.lm.openai_compat import OpenAICompatibleLM

_LAZY = {"AnthropicLM": "rlmbox.lm.anthropic",
         "OpenAICompatibleLM": "rlmbox.lm.openai_compat"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rlmbox' has no attribute {name!r}")

__all__ = [
    "AnthropicLM",
    "AuditError",
    "AuditRecordInvalid",
    "AuditWriteError",
    "BudgetExceeded",
    "CodeRejected",
    "Completion",
    "ExecResult",
    "FileTransferRefused",
    "IsolationProperty",
    "IsolationUnavailable",
    "LMError",
    "LMProvider",
    "LMRequestFailed",
    "OpenAICompatibleLM",
    "Policy",
    "PolicyDenied",
    "PolicyError",
    "ProtocolError",
    "RlmboxError",
    "Runtime",
    "SandboxCrashed",
    "SandboxError",
    "SandboxUnavailable",
    "ScriptedLM",
    "Session",
    "SessionClosed",
    "SessionError",
    "SessionKilled",
    "ToolError",
    "load_policy",
]
