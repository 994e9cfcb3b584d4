"""Every benchmark script that reports through figures.Table runs in its smallest mode,
records its rows, and the target and README tables are made from them: a benchmark that
crashes is a bug even though none asserts anything about speed. Process backend only
(``RLMBOX_BENCH_BACKENDS=process``), so this takes seconds; the Docker rows, and
bench_docker.py (transport only, Docker alone), run in ``run_all.sh``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMALLEST = {
    "bench_stack.py": ["--smoke"],
    "bench_memory.py": ["--smoke"],
    "bench_context.py": ["--smoke"],
    "bench_audit.py": ["--events", "200", "--calls", "20"],
    "bench_daemon.py": ["--sessions", "1", "--cells", "2"],
    "bench_peers.py": ["--smoke"],
    "bench_adapters.py": ["--cells", "2", "--setups", "1"],
}


def run(script: str, args: list[str], results: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RLMBOX_BENCH_BACKENDS": "process",
           "RLMBOX_BENCH_RESULTS": str(results)}
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
                          check=False)


def rows(results: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in results.read_text().splitlines()]


@pytest.mark.parametrize("script", sorted(SMALLEST))
def test_benchmark_runs_in_its_smallest_mode_and_records_its_rows(script: str,
                                                                  tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    done = run(script, SMALLEST[script], results)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("### "), done.stdout[:500]
    recorded = rows(results)
    assert recorded, "no rows recorded"
    failed = [r for r in recorded if r["median"] is None and r["system"] != "floor"
              and "not installed" not in str(r["note"])]
    assert not failed, failed


def test_target_and_readme_tables_come_from_the_recorded_rows(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    assert run("bench_stack.py", ["--smoke"], results).returncode == 0
    targets = run("targets.py", [str(results)], results)
    assert targets.returncode == 0, targets.stderr
    measured = [ln for ln in targets.stdout.splitlines() if ln.startswith("| trivial cell")]
    assert len(measured) == 2
    assert all(ln.rstrip(" |").endswith(("| met", "| not met")) for ln in measured), measured
    readme = tmp_path / "README.md"
    readme.write_text("before\n<!-- bench-tables:start -->\nSTALE-TABLE\n"
                      "<!-- bench-tables:end -->\nafter\n")
    written = run("readme_tables.py", [str(results), "--write", str(readme)], results)
    assert written.returncode == 0, written.stderr
    text = readme.read_text()
    assert text.startswith("before\n<!-- bench-tables:start -->\nFrom one")
    assert "STALE-TABLE" not in text
    assert text.endswith("<!-- bench-tables:end -->\nafter\n")
    assert "| rlmbox process | " in text


def test_the_audit_stage_breakdown_names_each_step_and_the_whole(tmp_path: Path) -> None:
    done = run("bench_audit.py", ["--stages", "--calls", "20"], tmp_path / "results.json")
    assert done.returncode == 0, done.stderr[-2000:]
    steps = [line.rsplit(None, 2) for line in done.stdout.splitlines()]
    assert [name for name, _, _ in steps][-1] == "whole append()"
    assert len(steps) == 7
    assert all(unit == "us" and float(value) > 0 for _, value, unit in steps), steps
