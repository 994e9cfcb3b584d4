"""``rlmbox env build|show POLICY``: the policy's package environment (runtime/environment.py)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rlmbox.policies.model import load_policy
from rlmbox.runtime.environment import (
    MANIFEST,
    build_environment,
    environment_dir,
    is_built,
    recipe_hash,
)


def register(subparsers: Any) -> None:
    env = subparsers.add_parser(
        "env", help="the Python packages a policy's sandboxes may import")
    actions = env.add_subparsers(dest="env_command", metavar="ACTION", required=True)
    build = actions.add_parser(
        "build", help="install the policy's environment.packages once (cached by recipe)")
    build.add_argument("policy", help="a preset name or a policy file")
    build.add_argument("--force", action="store_true", help="rebuild even when built")
    build.set_defaults(handler=run_build)
    show = actions.add_parser("show", help="print where the environment is and what it holds")
    show.add_argument("policy", help="a preset name or a policy file")
    show.add_argument("--json", action="store_true", help="print a JSON object")
    show.set_defaults(handler=run_show)


def run_build(args: argparse.Namespace) -> int:
    policy = load_policy(args.policy)
    print(build_environment(policy.environment, force=args.force))
    return 0


def run_show(args: argparse.Namespace) -> int:
    environment = load_policy(args.policy).environment
    target = environment_dir(environment)
    built = bool(environment.packages) and is_built(environment)
    installed = json.loads((target / MANIFEST).read_text())["installed"] if built else []
    report = {"packages": list(environment.packages), "recipe": recipe_hash(environment),
              "path": str(target), "built": built, "installed": installed}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    if not environment.packages:
        print("this policy names no packages (environment.packages)")
        return 0
    print(f"packages:  {', '.join(environment.packages)}")
    print(f"path:      {target}")
    print(f"built:     {'yes: ' + ', '.join(installed) if built else 'no: run rlmbox env build'}")
    return 0 if built else 1
