"""The CLI's bad-input paths: a clear one-line error and exit 2, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

RLMBOX = [sys.executable, "-m", "rlmbox.cli.main"]


def run(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RLMBOX, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False, input=stdin)


@pytest.fixture
def cell(tmp_path: Path) -> Path:
    path = tmp_path / "cell.py"
    path.write_text("print(1)\n")
    return path


def _clean_error(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    for needle in needles:
        assert needle in done.stderr, done.stderr


def test_a_missing_context_file_is_named(tmp_path: Path, cell: Path) -> None:
    done = run("exec", str(cell), "--context", "nope.txt", cwd=tmp_path)
    _clean_error(done, "cannot read the context nope.txt", "No such file")


def test_a_binary_context_file_is_named(tmp_path: Path, cell: Path) -> None:
    (tmp_path / "bin.txt").write_bytes(b"ok\x00\xff\xfe")
    done = run("exec", str(cell), "--context", "bin.txt", cwd=tmp_path)
    _clean_error(done, "bin.txt is not UTF-8 text", "offset 3")


def test_a_json_context_is_parsed_only_when_asked(tmp_path: Path) -> None:
    (tmp_path / "ctx.json").write_text('{"a": 1}')
    (tmp_path / "c.py").write_text("print(type(context).__name__)\n")
    plain = run("exec", "c.py", "--context", "ctx.json", "--audit-dir", "a", cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    assert "str" in plain.stdout
    parsed = run("exec", "c.py", "--context", "ctx.json", "--context-format", "json",
                 "--audit-dir", "a", cwd=tmp_path)
    assert parsed.returncode == 0, parsed.stderr
    assert "dict" in parsed.stdout
    (tmp_path / "bad.json").write_text("{nope")
    bad = run("exec", "c.py", "--context", "bad.json", "--context-format", "json",
              cwd=tmp_path)
    _clean_error(bad, "bad.json is not valid JSON", "line 1")


def test_an_unknown_lm_spec_lists_the_valid_forms(tmp_path: Path, cell: Path) -> None:
    (tmp_path / "doc.txt").write_text("x")
    done = run("run", "task", "--context", "doc.txt", "--root-lm", "foo:bar", cwd=tmp_path)
    _clean_error(done, "'foo:bar'", "anthropic:MODEL", "openai:MODEL@BASE_URL")


def test_an_unknown_policy_is_reported_once(tmp_path: Path, cell: Path) -> None:
    done = run("exec", str(cell), "--policy", "nosuch", cwd=tmp_path)
    _clean_error(done, "cannot read policy 'nosuch'", "presets are")
    assert done.stderr.count("No such file") == 1, done.stderr


def test_a_yaml_syntax_error_names_the_file(tmp_path: Path, cell: Path) -> None:
    (tmp_path / "bad.yaml").write_text("name: x\nversion: 1\nrules: [\n")
    done = run("exec", str(cell), "--policy", "bad.yaml", cwd=tmp_path)
    _clean_error(done, "bad.yaml", "not valid YAML", "line 4")


def test_exec_json_reports_failures_as_json(tmp_path: Path, cell: Path) -> None:
    done = run("exec", str(cell), "--json", "--policy", "nosuch", cwd=tmp_path)
    assert done.returncode == 2
    report = json.loads(done.stdout)
    assert report["error"].startswith("cannot read policy 'nosuch'")
    assert report["type"] == "PolicyError"


def test_token_list_does_not_create_a_mistyped_state_dir(tmp_path: Path) -> None:
    typo = tmp_path / "typo"
    done = run("token", "list", "--state", str(typo), cwd=tmp_path)
    _clean_error(done, str(typo), "no daemon state")
    assert not typo.exists()


def test_a_closed_pipe_ends_quietly(tmp_path: Path, cell: Path) -> None:
    """``rlmbox ... | head``: the reader leaves early; no BrokenPipeError traceback."""
    reader, writer = os.pipe()
    os.close(reader)
    with os.fdopen(writer, "w") as closed:
        done = subprocess.run([*RLMBOX, "policy", "explain", "default"], cwd=tmp_path,
                              stdout=closed, stderr=subprocess.PIPE, text=True, timeout=60,
                              check=False)
    assert "Traceback" not in done.stderr, done.stderr
    assert "BrokenPipeError" not in done.stderr


def test_version(tmp_path: Path) -> None:
    done = run("--version", cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout.startswith("rlmbox 0.")


def test_a_missing_key_names_the_environment_variable(tmp_path: Path) -> None:
    (tmp_path / "doc.txt").write_text("x")
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    done = subprocess.run([*RLMBOX, "run", "t", "--context", "doc.txt", "--root-lm",
                           "anthropic:claude-haiku-4-5"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    _clean_error(done, "ANTHROPIC_API_KEY")
    assert "api_key=" not in done.stderr


def test_serve_socket_in_a_shared_directory_says_what_to_do(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    done = run("serve", "--socket", str(shared / "d.sock"), "--state", str(tmp_path / "st"),
               cwd=tmp_path)
    _clean_error(done, "the socket's directory", "only you can write")
    assert "chmod 700" not in done.stderr


def test_audit_verify_names_the_missing_directory_given(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "log"
    done = run("audit", "verify", str(missing), cwd=tmp_path)
    _clean_error(done, f"no audit log at {missing}")
