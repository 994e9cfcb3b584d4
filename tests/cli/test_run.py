"""``rlmbox run`` shows the root model as it goes, and ``--json`` gives the trajectory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

RLMBOX = [sys.executable, "-m", "rlmbox.cli.main"]
REPLIES = ["First I count the lines.\n```repl\nn = len(context.splitlines())\nprint(n)\n```",
           "Now I answer.\n```repl\nFINAL(str(n))\n```"]


def _run(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "root.json").write_text(json.dumps(REPLIES))
    (tmp_path / "doc.txt").write_text("a\nb\nc\n")
    return subprocess.run([*RLMBOX, "run", "How many lines?", "--context", "doc.txt",
                           "--root-lm", "root.json", "--audit-dir", "audit", *extra],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          check=False)


def test_each_step_shows_the_root_models_reply(tmp_path: Path) -> None:
    done = _run(tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.index("step 1 · root model") < out.index("First I count the lines.") \
        < out.index(">>> n = len(context.splitlines())") < out.index("Now I answer.")
    assert "answer: 3" in out


def test_json_prints_the_trajectory(tmp_path: Path) -> None:
    done = _run(tmp_path, "--json")
    assert done.returncode == 0, done.stderr
    trajectory = json.loads(done.stdout)
    assert trajectory["answered"] is True
    assert trajectory["answer"] == "3"
    assert [s["reply"] for s in trajectory["steps"]] == REPLIES
    assert trajectory["steps"][0]["cells"][0]["stdout"] == "3\n"
    assert (tmp_path / trajectory["audit_log"]).exists()
