"""``rlmbox policy check|explain|test|schema``: operate on policy files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rlmbox.policies.cases import load_cases, run_cases
from rlmbox.policies.explain import explain, warnings
from rlmbox.policies.model import Policy, load_policy


def _check(args: argparse.Namespace) -> int:
    policy = load_policy(args.file)   # PolicyError -> exit 2 with every error listed
    found = warnings(policy)
    for warning in found:
        print(f"warning: {warning}")
    if found and args.strict:
        print(f"{args.file}: FAIL (--strict): {len(found)} warning(s)")
        return 1
    print(f"{args.file}: ok ({len(policy.rules)} rules, sha256 {policy.sha256})")
    return 0


def _explain(args: argparse.Namespace) -> int:
    print("\n".join(explain(load_policy(args.file))))
    return 0


def _test(args: argparse.Namespace) -> int:
    results = run_cases(load_policy(args.file), load_cases(Path(args.cases)))
    for case, ok, said in results:
        label = case.name or f"{case.call}({', '.join(f'{k}={v!r}' for k, v in case.args.items())})"
        print(f"{'PASS' if ok else 'FAIL'} {label}: expected {case.expect}, got {said}")
    failed = sum(not ok for _, ok, _ in results)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


def _schema(args: argparse.Namespace) -> int:
    schema: dict[str, Any] = Policy.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "rlmbox policy"
    print(json.dumps(schema, indent=2, sort_keys=True))
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("policy", help="check, explain and test policy files")
    sub = parser.add_subparsers(dest="policy_command", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="validate a policy; list errors and warnings")
    check.add_argument("file", help="a policy YAML file or preset name")
    check.add_argument("--strict", action="store_true", help="exit 1 on warnings")
    check.set_defaults(handler=_check)
    explain_p = sub.add_parser("explain", help="say in plain words what a policy permits")
    explain_p.add_argument("file")
    explain_p.set_defaults(handler=_explain)
    test = sub.add_parser("test", help="check expected decisions listed in CASES.yaml")
    test.add_argument("file")
    test.add_argument("cases")
    test.set_defaults(handler=_test)
    schema = sub.add_parser("schema", help="print the JSON Schema of policy files")
    schema.set_defaults(handler=_schema)
