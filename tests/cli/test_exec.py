"""``rlmbox exec``: cells from files, ``-c`` and stdin; streamed output; per-cell timeout;
``--stop-on-error``; the header says which policy and backend ran."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

RLMBOX = [sys.executable, "-m", "rlmbox.cli.main"]


def run(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RLMBOX, "exec", "--audit-dir", str(cwd / "audit"), *args],
                          cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
                          input=stdin)


def test_code_from_c_and_stdin_share_one_session(tmp_path: Path) -> None:
    done = run("-c", "x += 1", "-", "-c", "print(x * 2 + 1)", cwd=tmp_path,
               stdin="x = 20\n")   # files and '-' first, then each -c in order
    assert done.returncode == 0, done.stderr
    assert "43" in done.stdout


def test_the_header_names_policy_and_backend(tmp_path: Path) -> None:
    done = run("-c", "pass", "--policy", "strict", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("policy strict (sha256 ")
    assert "backend process" in done.stdout.splitlines()[0]


def test_answers_look_the_same_as_in_run(tmp_path: Path) -> None:
    done = run("-c", "FINAL('7341')", cwd=tmp_path)
    assert "answer: 7341\n" in done.stdout


def test_output_streams_before_the_cell_ends(tmp_path: Path) -> None:
    code = "import sys, time\nprint('early', flush=True)\ntime.sleep(4)\nprint('late')"
    with subprocess.Popen([*RLMBOX, "exec", "--audit-dir", str(tmp_path / "a"), "-c", code],
                          cwd=tmp_path, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            seen = ""
            while "early" not in seen:
                line = process.stdout.readline()
                assert line, "exec ended without streaming 'early'"
                seen += line
            assert process.poll() is None, "the cell had already ended: output not streamed"
            rest = process.stdout.read()
            assert process.wait(60) == 0
            assert "late" in rest
        finally:
            process.kill()


def test_timeout_and_stop_on_error(tmp_path: Path) -> None:
    done = run("-c", "import time\ntime.sleep(30)", "-c", "print('second ran')",
               "--timeout", "1", "--stop-on-error", "--json", cwd=tmp_path)
    assert done.returncode == 1
    reports = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["status"] for r in reports] == ["interrupted"]
    assert reports[0]["duration_s"] < 15


def test_no_cells_is_a_usage_error(tmp_path: Path) -> None:
    done = run(cwd=tmp_path)
    assert done.returncode == 2
    assert "no cells" in done.stderr
