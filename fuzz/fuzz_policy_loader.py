"""Atheris target: any bytes either load as a Policy or raise PolicyError with located
errors; nothing else escapes (no crash, no other exception, no half-loaded policy).

    python fuzz/fuzz_policy_loader.py -max_total_time=60 fuzz/corpus/policy_loader
    python fuzz/fuzz_policy_loader.py --make-corpus fuzz/corpus/policy_loader
"""

from __future__ import annotations

from pathlib import Path

import atheris

with atheris.instrument_imports():
    from rlmbox.errors import PolicyError
    from rlmbox.policies.engine import CallRequest, PolicyEngine
    from rlmbox.policies.model import Policy, load_policy_text


def TestOneInput(data: bytes) -> None:  # the name atheris looks for
    try:
        policy = load_policy_text(data)
    except PolicyError as exc:
        if not exc.errors or not all(isinstance(e, str) and ": " in e for e in exc.errors):
            raise AssertionError(f"PolicyError without located errors: {exc.errors!r}") from exc
        return
    if not isinstance(policy, Policy) or len(policy.sha256) != 64:
        raise AssertionError("load returned something other than a complete Policy")
    decision = PolicyEngine(policy).decide(CallRequest("llm_query", {"prompt": "x"}))
    if decision.effect == "permit" and not decision.rule_ids:
        raise AssertionError("a permit without a deciding rule")


def make_corpus(target: Path) -> None:
    from rlmbox.policies.model import PRESETS, preset_text  # noqa: PLC0415

    target.mkdir(parents=True, exist_ok=True)
    for name in PRESETS:
        (target / f"preset-{name}.yaml").write_bytes(preset_text(name))
    (target / "typo.yaml").write_bytes(
        b"rules:\n  - {id: a, effect: permit, function: llm_query, when: {modle: x}}\n")
    (target / "anchors.yaml").write_bytes(b"a: &x [1, 2]\nb: *x\n")
    (target / "regex.yaml").write_bytes(
        b"rules: [{id: r, effect: forbid, function: '*', when: {p: {regex: '(a+)+'}}}]\n")


if __name__ == "__main__":
    from entry import run  # fuzz/ is sys.path[0] when run as a script

    run(TestOneInput, make_corpus)
