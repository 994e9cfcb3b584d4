"""Runs DSPy's own interpreter tests twice, on DSPy's interpreters (control) and on rlmbox's.

    python -m tests.adapters.upstream.run_dspy_suite /path/to/dspy.git [REF [test files...]]

The path is a clone (or a bare git directory) of the authors' repository; REF is the commit
whose tests are run (default: ``REF`` below, the nearest stored commit to the installed dspy
3.4.1, see docs/adapters.md). The authors' ``tests/`` tree at REF is extracted into a
temporary directory and run there against the *installed* dspy; nothing is fetched and
nothing is copied into this repository. Without a path this exits 0 with a note. Not a
pytest module: the authors' tests are theirs, run as they are, only the interpreter swapped.

Per suite it prints the scored tests, how many pass on each side and each test whose
outcome differs. Tests marked ``deno`` need DSPy's Deno/Pyodide sandbox; they are run with
``--deno`` on every side. Where Deno is not installed the control (``PythonInterpreter``)
fails them, so a second control runs them with DSPy's ``LocalInterpreter`` in
``PythonInterpreter``'s place: it shows which tests the installed dspy passes at all.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from xml.etree import ElementTree

# dspy PR #10238 ("LocalInterpreter"): the stored commit nearest to dspy 3.4.1's interpreters
REF = "eee3db6fb93f64004b399219ac2924da6b2b09ac"
RUN_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Suite:
    """A test file and the pytest options that pick its tests that run a real interpreter."""

    path: str
    options: tuple[str, ...]


SUITES = [
    # the rest of test_rlm.py drives a MockInterpreter: it never meets the interpreter under test
    Suite("tests/predict/test_rlm.py", ("--deno", "-m", "deno")),
    Suite("tests/primitives/test_python_interpreter.py", ("--deno",)),
    Suite("tests/primitives/test_local_interpreter.py", ()),
    Suite("tests/callback/test_interpreter_callback.py", ("--deno",)),
]


def extract_tests(checkout: Path, ref: str, into: Path) -> None:
    """The authors' ``tests/`` tree at ``ref``, written under ``into``."""
    archive = subprocess.run(["git", "-C", str(checkout), "archive", "--format=tar", ref,
                              "tests/"], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")


SIDES = ("control", "local", "rlmbox")   # DSPy's interpreter, LocalInterpreter in its place, rlmbox


def outcomes(suite: Suite, root: Path, side: str) -> dict[str, str]:
    """Each test's outcome (passed, failed, skipped) from one pytest run of ``suite``."""
    report = root / f"report-{side}.xml"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
               "-W", "ignore", "--rootdir", str(root), f"--junitxml={report}",
               *suite.options, suite.path]
    if side != "control":
        command[3:3] = ["-p", "swap_dspy"]   # by its own directory: DSPy has a tests package too
    here = Path(__file__).resolve().parent
    repository = here.parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repository), str(root), str(here)]),
           "RLMBOX_DSPY_STANDIN": side,
           "RLMBOX_AUDIT_DIR": str(root / f"audit-{side}")}   # removed with the directory
    subprocess.run(command, cwd=root, env=env, capture_output=True, check=False,
                   timeout=RUN_TIMEOUT_S)
    if not report.exists():
        return {}
    results: dict[str, str] = {}
    # S314: the report is the one this pytest run just wrote, not outside input
    for case in ElementTree.parse(report).iter("testcase"):  # noqa: S314
        name = f"{case.get('classname')}::{case.get('name')}"
        kinds = {child.tag for child in case}
        results[name] = ("failed" if kinds & {"failure", "error"}
                         else "skipped" if "skipped" in kinds else "passed")
    report.unlink()
    return results


def compare(suite: Suite, root: Path) -> None:
    sides = SIDES if "--deno" in suite.options else ("control", "rlmbox")
    results = {side: outcomes(suite, root, side) for side in sides}
    scored = sorted(set().union(*results.values()))
    passed = {side: sum(1 for name in scored if results[side].get(name) == "passed")
              for side in sides}
    print(f"{suite.path}: scored {len(scored)}, "
          + ", ".join(f"{side} {passed[side]}" for side in sides), flush=True)
    for name in scored:
        seen = {side: results[side].get(name, "absent") for side in sides}
        if set(seen.values()) != {"passed"}:
            print("    " + " ".join(f"{side} {outcome:8}" for side, outcome in seen.items())
                  + f" {name}", flush=True)


def main() -> int:
    if len(sys.argv) < 2:
        print("no dspy checkout given: nothing to run")
        return 0
    checkout = Path(sys.argv[1]).resolve()
    ref = sys.argv[2] if len(sys.argv) > 2 else REF
    chosen = set(sys.argv[3:])
    with tempfile.TemporaryDirectory(prefix="dspy-tests-") as temp:
        root = Path(temp)
        extract_tests(checkout, ref, root)
        for suite in SUITES:
            if not chosen or suite.path in chosen:
                compare(suite, root)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
