"""rlmbox: a secure execution runtime for Recursive Language Model REPLs.

The public API is what this module exports; everything else is private to the package.
"""

from rlmbox.errors import (
    AuditError,
    AuditRecordInvalid,
    AuditWriteError,
    BudgetExceeded,
    CodeRejected,
    IsolationUnavailable,
    LMError,
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
)
from rlmbox.policies.model import Policy, load_policy
from rlmbox.runtime.lm.base import Completion, LMProvider
from rlmbox.runtime.lm.scripted import ScriptedLM
from rlmbox.runtime.results import ExecResult
from rlmbox.runtime.runtime import Runtime
from rlmbox.runtime.session import Session
from rlmbox.sandboxes.base import IsolationProperty

__all__ = [
    "AuditError",
    "AuditRecordInvalid",
    "AuditWriteError",
    "BudgetExceeded",
    "CodeRejected",
    "Completion",
    "ExecResult",
    "IsolationProperty",
    "IsolationUnavailable",
    "LMError",
    "LMProvider",
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
    "load_policy",
]
