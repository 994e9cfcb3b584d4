"""The full stack every rlmbox row measures: Session + policy + ledger + audit, as users run it.

The ``default`` preset with only the backend (and runtime) changed, and the call budget
raised so a benchmark cannot exhaust it; on runsc ``seccomp`` is taken out of the required
properties, because gVisor under this engine runs without a guest seccomp filter and claims
none (docs/backends-docker.md; its own sentry filter stays). The audit log is a real
``AuditLog`` in a temporary directory; the LM is an instant scripted one, so a figure is the
path and not a model. ``llm_query`` round trips are timed inside the sandbox around each call.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

import yaml

from rlmbox.policies.model import Policy, policy_from_data, preset_text

BACKENDS_ENV = "RLMBOX_BENCH_BACKENDS"
BACKENDS: tuple[tuple[str, str | None], ...] = (
    ("process", None), ("docker", "runc"), ("docker", "runsc"))

# Timed inside the sandbox, so the figure is the call itself, not the cell around it.
LLM_LOOP = """
import time as _t, json as _j
_s = []
for _i in range({n}):
    _a = _t.perf_counter()
    _r = llm_query('ping')
    _s.append(_t.perf_counter() - _a)
print(_j.dumps({{"samples": _s, "reply": str(_r)[:1000]}}))
"""


def system_name(backend: str, runtime: str | None) -> str:
    return f"rlmbox {backend}" + (f"/{runtime}" if runtime else "")


def stack_policy(backend: str, runtime: str | None, *, memory_mb: int | None = None) -> Policy:
    """The default preset on the given backend, with a call budget a benchmark cannot hit
    (and, for the context benchmark, room for a 1 GB string)."""
    data: dict[str, Any] = yaml.safe_load(preset_text("default"))
    data["name"] = f"bench-{backend}-{runtime or 'host'}"
    data["isolation"]["backend"] = backend
    if runtime is not None:
        data["isolation"]["runtime"] = runtime
    if runtime == "runsc":
        data["isolation"]["require"].remove("seccomp")
    data["budgets"]["tree"]["calls"] = 10**9
    if memory_mb is not None:
        data["limits"]["memory_mb"] = memory_mb
    return policy_from_data(data)


def loop_result(stdout: str) -> tuple[list[float], str]:
    """Samples and last reply printed by LLM_LOOP (the last JSON line of the output)."""
    for line in reversed(stdout.strip().splitlines()):
        with contextlib.suppress(ValueError):
            data = json.loads(line)
            return [float(s) for s in data["samples"]], str(data["reply"])
    return [], f"no timing line in the output: {stdout[-160:]!r}"


def available_backends() -> tuple[list[tuple[str, str | None]], str | None, str]:
    """The backends this machine runs, the sandbox image (None without an engine) and,
    when Docker is missing, why. ``RLMBOX_BENCH_BACKENDS=process`` keeps to the process
    backend (the smoke test: seconds, not minutes)."""
    if os.environ.get(BACKENDS_ENV, "") == "process":
        return [("process", None)], None, ""
    try:
        from rlmbox.sandboxes.docker.engine import connect, runtimes
        from rlmbox.sandboxes.images.build import ensure_image

        client = connect()
        present = runtimes(client)
        image = ensure_image(client, log=lambda _msg: None)
    except Exception as exc:  # no engine: the process rows still run
        return [("process", None)], None, f"{type(exc).__name__}: {exc}"
    chosen = [(b, r) for b, r in BACKENDS if r is None or r in present]
    return chosen, image, ""
