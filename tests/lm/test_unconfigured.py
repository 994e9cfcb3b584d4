"""Calling an LM that nobody configured is an error, never a made-up answer.

The model code sees a ``HostCallError`` naming what to configure; the CLI's ``exec``
reports the failed cell and exits 1; ``run`` uses the root model for sub-calls when
``--lm`` is not given (documented in README and docs/lm-providers.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rlmbox import Runtime
from rlmbox.errors import LMError
from rlmbox.lm.unconfigured import UnconfiguredLM

RLMBOX = [sys.executable, "-m", "rlmbox.cli.main"]


def test_the_unconfigured_provider_raises_with_a_hint() -> None:
    with pytest.raises(LMError, match="no LM provider is configured: pass lm="):
        UnconfiguredLM("pass lm= to Runtime").complete("hello")


def test_llm_query_without_a_provider_is_an_error_in_the_cell(tmp_path: Path) -> None:
    with Runtime("default", audit_dir=tmp_path / "audit", pool_size=0) as rt, \
            rt.session() as session:
        result = session.exec("try:\n    llm_query('hi')\nexcept HostCallError as e:\n"
                              "    print(type(e).__name__, e)\n")
    assert result.status == "ok", result.error
    assert result.stdout.startswith("HostCallError ")
    assert "no LM provider is configured" in result.stdout
    assert "Runtime(lm=" in result.stdout


def test_cli_exec_without_lm_fails_the_cell(tmp_path: Path) -> None:
    cell = tmp_path / "cell.py"
    cell.write_text("print(llm_query('hi'))\n")
    done = subprocess.run([*RLMBOX, "exec", str(cell), "--json", "--audit-dir",
                           str(tmp_path / "audit")], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout.splitlines()[0])
    assert report["status"] == "error"
    assert "--lm SPEC" in report["error"]


def test_cli_exec_takes_the_same_lm_specs_as_run(tmp_path: Path) -> None:
    script = tmp_path / "sub.json"
    script.write_text(json.dumps(["from the script"]))
    cell = tmp_path / "cell.py"
    cell.write_text("print(llm_query('hi'))\n")
    done = subprocess.run([*RLMBOX, "exec", str(cell), "--lm", f"scripted:{script}",
                           "--audit-dir", str(tmp_path / "audit")], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "from the script" in done.stdout


def test_cli_run_uses_the_root_model_for_sub_calls_without_lm(tmp_path: Path) -> None:
    root = tmp_path / "root.json"
    root.write_text(json.dumps({"rules": [
        {"match": "^sub:", "response": "42"}],
        "responses": ["```repl\nFINAL(llm_query('sub: what is it?'))\n```"]}))
    context = tmp_path / "doc.txt"
    context.write_text("a document")
    done = subprocess.run([*RLMBOX, "run", "What is it?", "--context", str(context),
                           "--root-lm", str(root), "--audit-dir", str(tmp_path / "audit")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "answer: 42" in done.stdout
