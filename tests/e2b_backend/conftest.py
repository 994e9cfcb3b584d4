"""Fixtures of the e2b backend's tests: the local test double (never E2B) and runtimes
whose policies use the e2b backend against it."""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from e2b_double import E2BDouble
from e2b_double.env import shared_double

from rlmbox.lm.scripted import ScriptedLM
from rlmbox.runtime.runtime import Runtime

if importlib.util.find_spec("e2b_code_interpreter") is None:
    if os.environ.get("CI"):
        raise RuntimeError("CI installs the dev extra, which brings e2b-code-interpreter")
    pytest.skip("e2b-code-interpreter is not installed", allow_module_level=True)


LIMITS = {"memory_mb": 256, "cell_timeout_s": 3, "interrupt_grace_s": 1,
          "output_bytes": 65536, "cpu_seconds": 60}


def e2b_policy(**e2b: Any) -> str:
    """A policy on the e2b backend (template "rlmbox" of the double), LM calls permitted."""
    settings = {"template": "rlmbox", "timeout_s": 600, "cpu": 1, "memory_mb": 256, **e2b}
    return json.dumps({
        "version": 1, "name": "e2b-test", "mode": "enforce", "limits": LIMITS,
        "isolation": {"backend": "e2b", "e2b": settings},
        "budgets": {"tree": {"calls": 50, "max_prompt_chars": 10000}},
        "rules": [{"id": "permit-llm", "effect": "permit", "function": "llm_query"}]})


@pytest.fixture
def double() -> Iterator[E2BDouble]:
    """The shared double, its fault knobs reset; no sandbox may outlive the test."""
    found = shared_double()
    found.faults.statuses.clear()
    found.faults.lost_creates = 0
    yield found
    leftover = sorted(found.sandboxes)
    for sandbox_id in leftover:
        found.kill(sandbox_id)
    assert not leftover, f"sandboxes left running on the double: {leftover}"


@pytest.fixture
def e2b_runtime(double: E2BDouble, tmp_path: Path) -> Iterator[Callable[..., Runtime]]:
    """Builds runtimes (closed at teardown) under an e2b policy with ``e2b`` overrides."""
    made: list[Runtime] = []

    def make(*, pool_size: int = 0, tenant: str | None = None, lm: Any = None,
             **e2b: Any) -> Runtime:
        path = tmp_path / f"policy-{len(made)}.yaml"
        path.write_text(e2b_policy(**e2b))
        rt = Runtime(path, lm=lm or ScriptedLM(default="lm-answer"),
                     audit_dir=tmp_path / f"audit-{len(made)}", pool_size=pool_size,
                     tenant=tenant)
        made.append(rt)
        return rt

    yield make
    for rt in made:
        rt.close()
