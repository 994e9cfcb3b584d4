"""On a terminal, ``rlmbox run`` and ``rlmbox demo`` show the run live (rich): each step,
each cell with its output, host calls with their cost, budget bars, a summary; what a
sandbox prints cannot drive the terminal. Runs the real command on a pseudo-terminal."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

RLMBOX = [sys.executable, "-m", "rlmbox.cli.main"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
TITLE_ATTACK = "\x1b]0;pwned\x07"
REPLIES = ["I print something hostile.\n```repl\n"
           f"print({TITLE_ATTACK!r} + 'after')\nprint(llm_query('q'))\n```",
           "Done.\n```repl\nFINAL('ok')\n```"]


def on_a_terminal(args: list[str], cwd: Path) -> tuple[int, str]:
    """Runs ``rlmbox ARGS`` with a pseudo-terminal as stdout; returns its code and bytes."""
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "110", "LINES": "40", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    with subprocess.Popen([*RLMBOX, *args], cwd=cwd, stdout=follower, stderr=subprocess.PIPE,
                          stdin=subprocess.DEVNULL, env=env) as proc:
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:   # EIO: the child closed its end
                break
            if not chunk:
                break
            chunks.append(chunk)
        code = proc.wait(120)
    os.close(leader)
    return code, b"".join(chunks).decode("utf-8", "replace")


def test_demo_on_a_terminal_shows_cells_calls_budget_and_summary(tmp_path: Path) -> None:
    code, raw = on_a_terminal(["demo", "--audit-dir", "audit"], tmp_path)
    assert code == 0, raw
    text = ANSI.sub("", raw)
    assert "step 1 · root model" in text
    assert "step 2 · cell" in text
    assert "budget (whole tree)" in text        # the live region, drawn while it ran
    assert "host calls (latest)" in text
    assert "llm_query" in text
    summary = text[text.index("summary"):]
    assert "7341" in summary
    assert re.search(r"host calls\s+\d+", summary)
    assert "audit/audit.jsonl" in summary


def test_a_cells_escape_sequences_are_shown_not_obeyed(tmp_path: Path) -> None:
    (tmp_path / "root.json").write_text(json.dumps(REPLIES))
    (tmp_path / "sub.json").write_text(json.dumps({"default": "sub answer"}))
    (tmp_path / "doc.txt").write_text("a\n")
    code, raw = on_a_terminal(["run", "task", "--context", "doc.txt", "--root-lm",
                               "root.json", "--lm", "sub.json", "--audit-dir", "audit"],
                              tmp_path)
    assert code == 0, raw
    assert TITLE_ATTACK not in raw
    assert "\\x1b]0;pwned\\x07after" in ANSI.sub("", raw)


def test_plain_output_escapes_what_a_cell_printed_too(tmp_path: Path) -> None:
    """Off a terminal (a pipe, a log file later shown with cat) the same text is escaped."""
    (tmp_path / "root.json").write_text(json.dumps(REPLIES))
    (tmp_path / "sub.json").write_text(json.dumps({"default": "sub answer"}))
    (tmp_path / "doc.txt").write_text("a\n")
    done = subprocess.run([*RLMBOX, "run", "task", "--context", "doc.txt", "--root-lm",
                           "root.json", "--lm", "sub.json", "--audit-dir", "audit"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert TITLE_ATTACK not in done.stdout
    assert "\\x1b]0;pwned\\x07after" in done.stdout
