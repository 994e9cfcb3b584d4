"""What the frontend adapters need of a runtime and its sessions, whichever engine runs
them: the embedded ``Runtime`` and the cluster's ``RayRuntime`` both meet it.

A ``typing.Protocol``, so this module imports nothing of the cluster (nor Ray); the
adapters type against it and take either engine.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from rlmbox.lm.base import LMProvider
from rlmbox.policies.model import Policy
from rlmbox.runtime.results import ExecResult
from rlmbox.runtime.session_files import FileEntry

OutputCallback = Callable[[str, str], None]
#: a frontend's own recursive call, ``subcall(prompt, model) -> text`` (``Runtime(subcall=)``)
Subcall = Callable[[str, str | None], str]


class SessionLike(Protocol):
    """A REPL session: ``Session`` on this machine, ``RemoteSession`` on a cluster node."""

    @property
    def id(self) -> str: ...

    @property
    def state(self) -> enum.Enum: ...

    def exec(self, code: str, *, timeout: float | None = None,
             on_output: OutputCallback | None = None) -> ExecResult: ...

    def add_tools(self, tools: Mapping[str, Callable[..., Any]]) -> None: ...

    def write_file(self, path: str, data: bytes | str) -> None: ...

    def read_file(self, path: str) -> bytes: ...

    def list_files(self, path: str) -> list[FileEntry]: ...

    def close(self, reason: str = "closed") -> None: ...


class RuntimeLike(Protocol):
    """Hands out sessions under one policy; ``close`` ends them all."""

    @property
    def policy(self) -> Policy: ...

    def session(self, context: Any = None, *,
                tools: Mapping[str, Callable[..., Any]] | None = None,
                backend: str | None = None) -> SessionLike: ...

    def close(self) -> None: ...


class RuntimeFactory(Protocol):
    """Makes the runtime an adapter runs on, given the adapter's own LM provider and
    sub-call (each frontend brings its own): ``functools.partial(Runtime, policy, ...)``
    or ``functools.partial(RayRuntime, policy, address=..., ...)``."""

    def __call__(self, *, lm: LMProvider, subcall: Subcall | None = None) -> RuntimeLike: ...


def is_ready(session: SessionLike) -> bool:
    """Whether the session can run a cell now (``ready`` in either engine's states)."""
    return bool(session.state.value == "ready")
