"""``rlmbox client``: a persistent daemon session used from the shell, against a real
daemon (in this process) and the real command (a subprocess)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlmbox.daemon.lifecycle import DaemonConfig
from rlmbox.lm.scripted import ScriptedLM
from rlmbox.policies.model import load_policy
from tests.daemon.conftest import RunningDaemon, policy_file, short_dir

RLMBOX = [sys.executable, "-m", "rlmbox.cli.main", "client"]


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[RunningDaemon]:
    sock = short_dir()
    running = RunningDaemon(DaemonConfig(
        state_dir=tmp_path / "state", socket=sock / "rlmbox.sock",
        policies={"test": load_policy(policy_file(tmp_path))}, lm=ScriptedLM(default="x")))
    try:
        yield running
    finally:
        running.stop()
        shutil.rmtree(sock, ignore_errors=True)


class Shell:
    """Runs ``rlmbox client ...`` with the daemon's socket and a token in the environment."""

    def __init__(self, daemon: RunningDaemon, tenant: str = "alice") -> None:
        self.env = {**os.environ, "RLMBOX_TOKEN": daemon.token(tenant)}
        self.socket = str(daemon.socket)

    def argv(self, *args: str) -> list[str]:
        return [*RLMBOX, *args, "--socket", self.socket]

    def __call__(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), env=self.env, capture_output=True, text=True,
                              timeout=120, check=False, input=stdin)


def test_a_session_lives_across_commands(daemon: RunningDaemon, tmp_path: Path) -> None:
    shell = Shell(daemon)
    context = tmp_path / "context.txt"
    context.write_text("hello world")
    created = shell("session", "create", "--context", str(context), "--id-only")
    assert created.returncode == 0, created.stderr
    sid = created.stdout.strip()
    first = shell("exec", sid, "-c", "n = len(context)")
    assert first.returncode == 0, first.stdout + first.stderr
    second = shell("exec", sid, "-", stdin="print(n * 2)\n")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "22\n" in second.stdout
    listed = json.loads(shell("session", "list", "--json").stdout)
    assert [row["id"] for row in listed] == [sid]
    assert shell("session", "close", sid).returncode == 0
    assert json.loads(shell("session", "list", "--json").stdout)[0]["state"] == "closed"


def test_json_results_and_a_failing_cell_exit_1(daemon: RunningDaemon) -> None:
    shell = Shell(daemon)
    sid = shell("session", "create", "--id-only").stdout.strip()
    done = shell("exec", sid, "-c", "FINAL(6 * 7)", "-c", "1/0", "--json")
    assert done.returncode == 1
    ok, failed = (json.loads(line) for line in done.stdout.splitlines())
    assert (ok["status"], ok["answer"]) == ("ok", 42)
    assert failed["status"] == "error"
    assert "ZeroDivisionError" in failed["error"]


def test_errors_are_one_line_and_exit_2(daemon: RunningDaemon) -> None:
    """Another tenant's (or an unknown) session, and a missing token: one line, exit 2, no
    traceback; with --json the error is a JSON object on stdout."""
    alice, bob = Shell(daemon, "alice"), Shell(daemon, "bob")
    sid = alice("session", "create", "--id-only").stdout.strip()
    refused = bob("exec", sid, "-c", "print(1)")
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1
    assert "404" in refused.stderr
    assert "Traceback" not in refused.stderr
    as_json = bob("session", "close", sid, "--json")
    assert as_json.returncode == 2
    assert json.loads(as_json.stdout)["type"] == "DaemonError"
    bob.env.pop("RLMBOX_TOKEN")
    no_token = bob("session", "list")
    assert no_token.returncode == 2
    assert "RLMBOX_TOKEN" in no_token.stderr


def test_interrupt_stops_a_cell_another_shell_runs(daemon: RunningDaemon) -> None:
    shell = Shell(daemon)
    sid = shell("session", "create", "--id-only").stdout.strip()
    spin = "import time\nprint('started', flush=True)\nwhile True:\n    time.sleep(0.01)\n"
    with subprocess.Popen(shell.argv("exec", sid, "-c", spin), env=shell.env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as running:
        assert running.stdout is not None
        deadline = time.monotonic() + 60
        while "started" not in running.stdout.readline():
            assert time.monotonic() < deadline, "the cell never started"
        began = time.monotonic()
        interrupted = shell("interrupt", sid)
        assert interrupted.stdout.strip() == "interrupted", interrupted.stderr
        rest, _ = running.communicate(timeout=30)
    assert time.monotonic() - began < 10
    assert running.returncode == 1
    assert "[interrupted" in rest


def test_files_put_get_and_ls(daemon: RunningDaemon, tmp_path: Path) -> None:
    """``rlmbox client files``: a local file goes in, model code changes it, it comes out."""
    shell = Shell(daemon)
    local = tmp_path / "in.txt"
    local.write_text("abc")
    sid = shell("session", "create", "--id-only").stdout.strip()
    put = shell("files", "put", sid, str(local), "/tmp/in.txt")
    assert put.returncode == 0, put.stderr
    ran = shell("exec", sid, "-c", "open('/tmp/out.txt','w').write(open('/tmp/in.txt').read()*2)")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    got = shell("files", "get", sid, "/tmp/out.txt", str(tmp_path / "out.txt"))
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "out.txt").read_text() == "abcabc"
    assert shell("files", "get", sid, "/tmp/in.txt").stdout == "abc"
    listed = json.loads(shell("files", "ls", sid, "/tmp", "--json").stdout)
    assert {e["name"] for e in listed} == {"in.txt", "out.txt"}
    outside = shell("files", "get", sid, "/etc/passwd")
    assert outside.returncode == 2
    assert "writable area" in outside.stderr
    assert "root:" not in outside.stdout
