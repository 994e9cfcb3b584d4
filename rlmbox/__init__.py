"""rlmbox: a secure execution runtime for Recursive Language Model REPLs."""

from rlmbox.errors import (
    AuditError,
    AuditWriteError,
    BudgetExceeded,
    CellTimeout,
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

__all__ = [
    "AuditError",
    "AuditWriteError",
    "BudgetExceeded",
    "CellTimeout",
    "IsolationUnavailable",
    "LMError",
    "PolicyDenied",
    "PolicyError",
    "ProtocolError",
    "RlmboxError",
    "SandboxCrashed",
    "SandboxError",
    "SandboxUnavailable",
    "SessionClosed",
    "SessionError",
    "SessionKilled",
]
