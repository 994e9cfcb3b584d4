"""The exception tree of rlmbox: one root, leaves named for what happened.

    RlmboxError
    ├── PolicyError                 a policy file or object is invalid
    ├── PolicyDenied                the policy refused a host call or a session
    ├── CodeRejected                the code gate refused a cell (line and reason)
    ├── BudgetExceeded              a budget of the session tree is spent
    ├── ProtocolError               a frame broke the wire protocol
    │   └── FrameTooLarge
    ├── SandboxError
    │   ├── SandboxUnavailable      a backend cannot run here (missing tool, engine down)
    │   │   └── ClusterFull         no cluster node had a free slot within the admission wait
    │   ├── IsolationUnavailable    a backend cannot provide a property the policy requires
    │   ├── SandboxCrashed          the sandbox died outside of a deliberate kill
    │   ├── ImageBuildFailed        the sandbox image could not be built
    │   ├── EnvironmentNotBuilt     the policy's packages are not built (rlmbox env build)
    │   └── EnvironmentBuildFailed  building the policy's packages failed
    ├── SessionError
    │   ├── SessionClosed           the session was closed; it cannot be used again
    │   ├── SessionKilled           the sandbox was killed (timeout, OOM, ...); the session is dead
    │   ├── SessionLost             the cluster node running the session died; the session is gone
    │   └── FileTransferRefused     a file in or out was refused: path, symlink, size, sandbox
    ├── AuditError                  the audit log cannot be written or read
    │   ├── AuditWriteError         ... writing failed: host calls stop (fail closed)
    │   └── AuditRecordInvalid      ... an event is not recordable (not JSON-able, reserved name)
    ├── ToolError                   a tool failed, with a message meant for model code
    ├── LMError                     an LM provider failed
    │   └── LMRequestFailed         ... its HTTP API answered with an error, or not at all
    └── DaemonError                 the daemon refused a request (auth, validation, not
                                    found) or cannot start (socket, state, config)

A cell that runs past its wall-time limit is not an exception: its ``ExecResult`` says
``interrupted`` (state kept) or ``killed`` (it ignored the interrupt).

Foreign exceptions (docker, OSError from a tool) are translated at the boundary with
``raise ... from exc`` so callers only ever need to catch ``RlmboxError``.
"""

from __future__ import annotations


class RlmboxError(Exception):
    """Root of every error rlmbox raises on purpose."""


class UsageError(RlmboxError):
    """Bad input on the command line: a file that cannot be read, a malformed argument."""


class PolicyError(RlmboxError):
    """A policy file or object is invalid; ``errors`` lists each problem with its path."""

    def __init__(self, message: str, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.errors: list[str] = list(errors or [])


class PolicyDenied(RlmboxError):
    """The policy refused an action; ``rule_ids`` names the deciding rules."""

    def __init__(self, message: str, rule_ids: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.rule_ids = rule_ids


class CodeRejected(RlmboxError):
    """The code gate (RestrictedPython) refused a cell; ``line`` and ``reason`` say where/why."""

    def __init__(self, message: str, line: int | None = None, reason: str = "",
                 errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.line = line
        self.reason = reason
        self.errors: list[str] = list(errors or [])


class BudgetExceeded(RlmboxError):
    """A budget of the session tree is spent."""

    def __init__(self, message: str, budget: str = "", used: float = 0, limit: float = 0) -> None:
        super().__init__(message)
        self.budget = budget
        self.used = used
        self.limit = limit


class ProtocolError(RlmboxError):
    """A frame broke the wire protocol (malformed, truncated, wrong type or field)."""


class FrameTooLarge(ProtocolError):
    """A frame's declared length is over the cap."""


class ToolError(RlmboxError):
    """Raised by a caller's tool when its message is meant for model code.

    Any other exception a tool raises reaches model code as ``HostCallError`` naming the
    tool and the exception's type only: a tool's own messages may carry host paths or
    internals, so only the ones the tool author chose to show cross into the sandbox.
    """


class SandboxError(RlmboxError):
    """A sandbox could not be started, driven or stopped."""


class SandboxUnavailable(SandboxError):
    """A backend cannot run on this machine; the message says what is missing."""


class ClusterFull(SandboxUnavailable):
    """Every cluster node's session slots stayed taken for the whole admission wait."""


class IsolationUnavailable(SandboxError):
    """A backend cannot provide an isolation property that the policy requires."""


class SandboxCrashed(SandboxError):
    """The sandbox died without being asked to."""


class ImageBuildFailed(SandboxError):
    """The sandbox image could not be built; the message says which step failed."""


class EnvironmentNotBuilt(SandboxError):
    """The policy names packages whose environment is not built; the message names the
    command that builds it (``rlmbox env build POLICY``)."""


class EnvironmentBuildFailed(SandboxError):
    """Installing the policy's packages failed (pip's last lines are in the message)."""


class SessionError(RlmboxError):
    """A session cannot do what was asked."""


class SessionClosed(SessionError):
    """The session was closed; it refuses reuse."""


class SessionKilled(SessionError):
    """The sandbox was killed (timeout, OOM, pids); the session is dead."""


class SessionLost(SessionError):
    """The cluster node (or its node actor) running the session died; the message names
    the reason. The session's sandbox died with its node actor."""


class NotOnCluster(SessionError):
    """What a session on a cluster node cannot do yet (the message names it: streaming
    the root-model text of ``rlm_query`` children); refused, never done on this machine
    instead."""


class FileTransferRefused(SessionError):
    """A file transfer was refused: a path outside the writable area, a symlink out of it,
    a size over ``limits.file_transfer_mb``, or the sandbox could not do it."""


class AuditError(RlmboxError):
    """The audit log cannot be written or read."""


class AuditWriteError(AuditError):
    """Writing the audit log failed; host calls stop until it is fixed (fail closed)."""


class AuditRecordInvalid(AuditError):
    """An event could not be recorded as given; the log itself is still healthy."""


class LMError(RlmboxError):
    """An LM provider failed to answer."""


class LMRequestFailed(LMError):
    """An LM provider's HTTP API failed: ``status`` (None when no response came back) and
    the ``attempts`` made. The message names the status and the provider's own error text,
    never the API key."""

    def __init__(self, message: str, *, status: int | None = None, attempts: int = 1) -> None:
        super().__init__(message)
        self.status = status
        self.attempts = attempts


class DaemonError(RlmboxError):
    """The daemon refused a request or cannot start: ``status`` is the HTTP status (None
    outside a request) and ``type`` the error type on the wire (``Unauthorized``,
    ``NotFound``, ``InvalidRequest``, ...); ``retry_after_s`` says when a refusal for
    load (429, 503) may succeed."""

    def __init__(self, message: str, *, status: int | None = None, type: str = "",
                 retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.retry_after_s = retry_after_s
