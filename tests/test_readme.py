"""The README's policy example loads and decides what the README says it does."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from rlmbox.policies.engine import CallRequest, PolicyEngine
from rlmbox.policies.model import load_policy

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_policy_example_decides_as_documented(tmp_path: Path) -> None:
    match = re.search(r"## A policy file\n\n```yaml\n(.*?)```", README.read_text(), re.S)
    assert match, "the README lost its policy example"
    path = tmp_path / "example.yaml"
    path.write_text(match.group(1))
    engine = PolicyEngine(load_policy(path))

    def decide(prompt: str, model: str | None) -> tuple[str, tuple[str, ...]]:
        d = engine.decide(CallRequest("llm_query", {"prompt": prompt, "model": model}))
        return d.effect, d.rule_ids

    assert decide("short", "small") == ("permit", ("permit-llm",))
    assert decide("x" * 100_001, "small") == ("deny", ("no-huge-prompts",))
    assert decide("short", "large")[0] == "deny"
    assert engine.decide(CallRequest("tool.anything", {})).effect == "deny"


def test_readme_python_example_runs_as_written(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The "Python API" block, run as written (a tool under the default preset included)."""
    match = re.search(r"## Python API\n\n```python\n(.*?)```", README.read_text(), re.S)
    assert match, "the README lost its Python example"
    monkeypatch.setenv("RLMBOX_AUDIT_DIR", str(tmp_path / "audit"))
    code = match.group(1).replace("print(len(context)); ", "print(len(context), lookup('k')); ")
    namespace: dict[str, Any] = {"big_text": "some text", "fn": lambda key: f"value of {key}"}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the README's own code
    result = namespace["r"]
    assert result.status == "ok", result.error
    assert result.stdout == "9 value of k\n"
    assert result.answer == "42"
