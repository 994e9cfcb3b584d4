"""Shared fixtures: real runtimes over real sandboxes, each with its own audit log."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import e2b_double.env  # noqa: F401 - first: takes any real E2B account out of the environment
import pytest
import run_timeline
import yaml

from rlmbox.lm.scripted import ScriptedLM
from rlmbox.runtime.runtime import Runtime

IN_CI = bool(os.environ.get("CI"))

def pytest_runtest_setup(item: pytest.Item) -> None:
    run_timeline.started(item.nodeid)


TEST_LIMITS: dict[str, Any] = {
    "memory_mb": 256, "pids": 64, "cell_timeout_s": 5, "interrupt_grace_s": 1,
    "output_bytes": 65536, "disk_mb": 32, "cpu_seconds": 120,
}


def write_policy(directory: Path, **sections: Any) -> Path:
    """A test policy: the default preset with ``sections`` merged over it (one level)."""
    from rlmbox.policies.model import load_policy

    base = load_policy("default").model_dump(mode="json")
    base["name"] = "test"
    base["limits"] = {**base["limits"], **TEST_LIMITS}
    base["rules"] = [*base["rules"], {"id": "permit-tools", "effect": "permit",
                                      "function": "tool.*"}]
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    path = directory / f"policy-{len(list(directory.glob('policy-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(base, sort_keys=False))
    return path


@pytest.fixture
def make_runtime(tmp_path: Path) -> Iterator[Callable[..., Runtime]]:
    """Builds runtimes (closed at teardown) under a test policy with overrides."""
    made: list[Runtime] = []

    def make(lm: Any = None, pool_size: int = 0, **sections: Any) -> Runtime:
        policy = write_policy(tmp_path, **sections)
        audit = tmp_path / f"audit-{len(made)}"
        rt = Runtime(policy, lm=lm or ScriptedLM(default="scripted answer"),
                     audit_dir=audit, pool_size=pool_size)
        made.append(rt)
        return rt

    yield make
    for rt in made:
        rt.close()


@pytest.fixture
def runtime(make_runtime: Callable[..., Runtime]) -> Runtime:
    return make_runtime()
