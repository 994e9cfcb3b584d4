"""Backend registry: names in policies and on the command line -> backend objects."""

from __future__ import annotations

import importlib
from typing import get_args

from rlmbox.errors import SandboxUnavailable
from rlmbox.policies.model import BackendName
from rlmbox.sandboxes.base import Backend
from rlmbox.sandboxes.process.backend import ProcessBackend

BACKEND_NAMES: tuple[str, ...] = get_args(BackendName)   # the policy schema's names


def backend_by_name(name: str, runtime: str | None = None) -> Backend:
    """Builds the backend called ``name``; ``runtime`` picks runc or runsc for docker."""
    if name == "process":
        return ProcessBackend()
    if name == "docker":
        try:
            module = importlib.import_module("rlmbox.sandboxes.docker.backend")
        except ImportError as exc:
            raise SandboxUnavailable(
                f"the docker backend is not available: {exc}; "
                "install it with: pip install 'rlmbox[docker]'") from exc
        backend: Backend = module.DockerBackend(runtime=runtime or "runc")
        return backend
    if name == "e2b":
        from rlmbox.sandboxes.e2b.backend import E2BBackend  # noqa: PLC0415 - its SDK is optional

        return E2BBackend()
    raise SandboxUnavailable(f"unknown backend {name!r}; known: {', '.join(BACKEND_NAMES)}")
