"""Policy tests in the policy's own terms: listed calls and the decision each must get."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rlmbox.errors import PolicyError
from rlmbox.policies.engine import CallRequest, PolicyEngine
from rlmbox.policies.model import Policy
from rlmbox.policies.source import format_path, parse_yaml


class Case(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    call: Annotated[str, Field(strict=True, min_length=1)]
    args: dict[str, Any] = Field(default_factory=dict)
    expect: Literal["permit", "deny"]
    rules: tuple[str, ...] | None = None   # if given, the deciding rule ids must equal these
    name: str = ""


class CaseFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    cases: tuple[Case, ...]


def load_cases(path: Path) -> tuple[Case, ...]:
    """Reads a CASES.yaml file; errors name their path and line like policy errors."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PolicyError(f"cannot read cases {str(path)!r}: {exc.strerror}") from exc
    data, source = parse_yaml(raw)
    try:
        return CaseFile.model_validate(data).cases
    except ValidationError as exc:
        errors = []
        for e in exc.errors():
            line = source.line_of(list(e["loc"]))
            errors.append(f"{format_path(list(e['loc']))}: {e['msg']}"
                          + (f" (line {line})" if line else ""))
        raise PolicyError(f"{path}: {len(errors)} error(s) in cases", errors) from exc


def run_cases(policy: Policy, cases: tuple[Case, ...]) -> list[tuple[Case, bool, str]]:
    """Each case with whether it passed and what the engine said."""
    engine = PolicyEngine(policy)
    results = []
    for case in cases:
        d = engine.decide(CallRequest(function=case.call, args=case.args))
        ok = d.effect == case.expect and (case.rules is None
                                           or tuple(sorted(case.rules)) == d.rule_ids)
        results.append((case, ok, f"{d.effect} ({d.reason})"))
    return results
