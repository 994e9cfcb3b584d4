"""The agent's ``init``: what a fresh sandbox is told about its session, and the handshake.

The config names the host functions to inject, the caps the agent applies to the honest
path (output, imports), and the confinement layers it installs on itself. None of it is
trusted on the way back: the host enforces every limit again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rlmbox.errors import RlmboxError, SandboxCrashed
from rlmbox.policies.model import Policy
from rlmbox.runtime.environment import SITE_PACKAGES, python_tag
from rlmbox.runtime.events import EventScope
from rlmbox.sandboxes.base import Sandbox, reason_once_dead

INIT_TIMEOUT_S = 30.0


def agent_config(policy: Policy, sandbox: Sandbox, functions: Iterable[str],
                 tools: Iterable[str], prepare: Sequence[str] = ()) -> dict[str, Any]:
    """The ``init`` frame's config (without the context, which the caller stages).

    ``prepare``: cells the session will run first, for the agent to compile once it has
    replied (while the host still records the start); dropped under ``code: restricted``,
    whose cells the host compiles itself.
    """
    prepared = [] if policy.code.mode == "restricted" else list(prepare)
    return {
        **({"prepare": prepared} if prepared else {}),
        "functions": sorted(n for n in functions if not n.startswith(("tool.", "context."))),
        "tools": sorted(tools),
        "output_limit": policy.limits.output_bytes,
        "output_stop": policy.limits.effective_output_stop_bytes,
        "context_mode": policy.context.mode,
        "code_mode": policy.code.mode,
        "allowed_imports": sorted(policy.code.allowed_imports),
        "seccomp": True, "landlock": True,
        "writable": sandbox.writable_paths(),
        **_environment(policy, sandbox),
        "session_env": dict(policy.session.env),
        "cwd": policy.session.cwd,
    }


def _environment(policy: Policy, sandbox: Sandbox) -> dict[str, Any]:
    """Where the package environment is inside and the Python it was built for."""
    inside = sandbox.environment_path()
    if inside is None:
        return {}
    return {"environment": {"site": f"{inside}/{SITE_PACKAGES}", "python": python_tag()}}


def send_init(sandbox: Sandbox, config: dict[str, Any], scope: EventScope) -> str:
    """Sends ``init`` and returns its id; the caller does its own start-up work (the
    session's records, their fsync) while the sandbox runs it, then calls
    :func:`await_init`. A pooled sandbox that sat idle wakes slowly, so the two overlap."""
    init_id = "init-" + scope.session
    try:
        sandbox.send({"t": "init", "id": init_id, "config": config})
    except SandboxCrashed as exc:   # it died meanwhile: loading a large context, say
        raise _died_initialising(sandbox) from exc
    return init_id


def await_init(sandbox: Sandbox, init_id: str, scope: EventScope) -> None:
    """Waits for ``init``'s result; audits ``session.ready`` with what the agent says it
    applied (reported by the sandbox, so recorded, not relied on)."""
    while True:
        try:
            frame = sandbox.recv(INIT_TIMEOUT_S)
        except SandboxCrashed as exc:
            raise _died_initialising(sandbox) from exc
        if frame is None:
            raise RlmboxError(f"the sandbox did not finish initialising in {INIT_TIMEOUT_S:g} s")
        if frame["t"] == "result" and frame["id"] == init_id:
            break
    if frame["status"] != "ok":
        raise RlmboxError(f"the sandbox failed to initialise: {frame.get('error')}")
    scope.event("session.ready", confinement=frame.get("answer"))


def _died_initialising(sandbox: Sandbox) -> SandboxCrashed:
    return SandboxCrashed("the sandbox died while initialising (loading the context?): "
                          f"{reason_once_dead(sandbox)}")
