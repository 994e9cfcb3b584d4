"""``rlmbox doctor``: which backends work here and what each one actually enforces."""

from __future__ import annotations

import argparse
import json
import platform
import shutil
from typing import Any

from rlmbox.errors import RlmboxError
from rlmbox.runtime.backends import BACKEND_NAMES, backend_by_name
from rlmbox.sandboxes.base import PROPERTY_MEANINGS, BackendReport, IsolationProperty


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "doctor", help="probe this machine: backends and the isolation each provides")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=run)


def _probe(name: str, runtime: str | None) -> tuple[BackendReport, str]:
    """The backend's report, and how to get what it could not show (its remedy)."""
    label = f"{name}/{runtime}" if runtime else name
    try:
        backend = backend_by_name(name, runtime)
        report = backend.probe()
    except RlmboxError as exc:
        return BackendReport(label, False, str(exc)), ""
    missing = frozenset(IsolationProperty) - frozenset(report.properties)
    return report, backend.remedy(missing) if report.available and missing else ""


def run(args: argparse.Namespace) -> int:
    probed = [_probe("process", None)]
    for runtime in ("runc", "runsc"):
        report, remedy = _probe("docker", runtime)
        probed.append((BackendReport(f"docker/{runtime}", report.available, report.detail,
                                     report.properties, report.declared), remedy))
    probed.append(_probe("e2b", None))
    reports = [report for report, _ in probed]
    unknown = {r.name.split("/")[0] for r in reports} - set(BACKEND_NAMES)
    if unknown:
        raise RlmboxError(f"doctor probed backends rlmbox does not know: {sorted(unknown)}")
    machine = {"kernel": platform.release(), "machine": platform.machine(),
               "bwrap": shutil.which("bwrap"), "docker": shutil.which("docker"),
               "runsc": shutil.which("runsc")}
    if args.json:
        print(json.dumps({"machine": machine, "backends": [
            {"name": r.name, "available": r.available, "detail": r.detail,
             "properties": sorted(str(p) for p in r.properties),
             "declared": sorted(str(p) for p in r.declared),
             "provider_attested": sorted(str(p) for p in r.attested), "remedy": remedy}
            for r, remedy in probed],
            "meanings": {str(p): m for p, m in PROPERTY_MEANINGS.items()}}, indent=2))
        return 0
    print(f"machine: Linux {machine['kernel']} {machine['machine']}")
    every = sorted(IsolationProperty, key=str)
    for report, remedy in probed:
        mark = "ok " if report.available else "-- "
        print(f"\n{mark}{report.name}: {report.detail}")
        if report.available:
            print("     measured  declared  property            (only 'measured' counts for "
                  "a policy; 'attested': the provider's word, counted, not observable)")
            for prop in every:
                measured = ("attested" if prop in report.attested
                            else "yes" if prop in report.properties else " no")
                declared = "yes" if prop in report.declared else " - "
                print(f"     {measured:>8}  {declared:>8}  {prop!s:<18}  {PROPERTY_MEANINGS[prop]}")
            if remedy:
                print(f"     to get the missing ones: {remedy}")
    return 0
