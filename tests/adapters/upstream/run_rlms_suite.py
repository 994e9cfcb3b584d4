"""Runs rlms' own tests twice, on rlms' environment (control) and on rlmbox's adapter.

    python -m tests.adapters.upstream.run_rlms_suite /path/to/rlm-checkout [test files...]

The checkout is the authors' repository at the installed version's tag (``v0.1.3``); this
fetches nothing and exits 0 with a note when the checkout is absent. Not a pytest module:
the authors' tests are theirs, run as they are, only the environment swapped.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

SUITES = ["tests/test_local_repl.py", "tests/repl/test_local_repl.py",
          "tests/test_local_repl_persistent.py", "tests/test_multi_turn_integration.py",
          "tests/test_rlm_query.py", "tests/repl/test_custom_tools.py", "tests/test_subcall.py",
          "tests/test_depth_metadata.py"]
_SUMMARY = re.compile(r"(\d+) (passed|failed|error|errors|skipped)")


def run(checkout: Path, files: list[str], swapped: bool) -> dict[str, int]:
    root = Path(__file__).resolve().parents[3]
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "-o", "addopts=", "-W", "ignore", "--rootdir", str(checkout), *files]
    if swapped:
        command[3:3] = ["-p", "swap_rlms"]   # by its own directory: rlms has a tests package too
    here = str(Path(__file__).resolve().parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(checkout), here])}
    done = subprocess.run(command, cwd=checkout, env=env, capture_output=True, text=True,
                          check=False)
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    counts = {kind.rstrip("s"): int(n) for n, kind in _SUMMARY.findall(last)}
    print(("rlmbox " if swapped else "control"), files, counts, flush=True)
    return counts


def main() -> int:
    if len(sys.argv) < 2 or not (Path(sys.argv[1]) / "tests").is_dir():
        print("no rlms checkout given (or it has no tests/): nothing to run")
        return 0
    checkout = Path(sys.argv[1]).resolve()
    for suite in sys.argv[2:] or SUITES:
        run(checkout, [suite], swapped=False)
        run(checkout, [suite], swapped=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
