"""Warm pools hand out fresh sandboxes only; the CLI runs cells and the demo end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from rlmbox.errors import SandboxCrashed
from rlmbox.runtime.runtime import Runtime
from rlmbox.sandboxes.process.backend import ProcessBackend

RLMBOX = [sys.executable, "-m", "rlmbox.cli.main"]


def test_warm_pool_never_reuses_a_sandbox(make_runtime: Callable[..., Runtime]) -> None:
    rt = make_runtime(pool_size=2)
    assert rt.warm_up(timeout=60)
    seen = set()
    for _ in range(4):
        with rt.session() as s:
            sandbox_id = s.sandbox.info.sandbox_id
            assert sandbox_id not in seen
            seen.add(sandbox_id)
            assert s.exec("print(globals().get('leak', 'fresh'))").stdout == "fresh\n"
            s.exec("leak = 'from a previous session'")


def test_pool_is_refilled_in_the_background(make_runtime: Callable[..., Runtime]) -> None:
    rt = make_runtime(pool_size=2)
    assert rt.warm_up(timeout=60)
    rt.session().close()
    pool = rt.pool()
    assert pool is not None
    assert pool.wait_full(timeout=60)
    assert pool.available == 2


def test_large_context_is_staged_as_a_file(make_runtime: Callable[..., Runtime]) -> None:
    rt = make_runtime(limits={"memory_mb": 1024, "cell_timeout_s": 60})
    big = "0123456789abcdef" * (128 * 1024 * 1024 // 16)   # 128 MiB
    with rt.session(context=big) as s:
        r = s.exec("print(len(context), context[-4:])", timeout=60)
    assert r.stdout == f"{len(big)} cdef\n"


def test_context_too_big_for_the_memory_limit_fails_clearly(runtime: Runtime) -> None:
    # 300 MiB against a 256 MiB limit: the string alone does not fit (the agent decodes
    # from a read-only mapping of the staged file, so it holds no second, bytes copy; a
    # context within the limit would be mapped, not copied: agent/context_map.py)
    big = "x" * (300 * 1024 * 1024)
    with pytest.raises(SandboxCrashed, match=r"out of memory|initialising"):
        runtime.session(context=big)


def test_fallback_without_bubblewrap_still_runs_cells_and_says_so() -> None:
    backend = ProcessBackend(use_bwrap=False)
    assert not backend.uses_bwrap
    report = backend.probe()
    assert report.available
    assert "no bubblewrap" in report.detail
    assert "pid_namespace" not in {str(p) for p in report.properties}
    assert "network_none" in {str(p) for p in report.properties}


def test_cli_exec_runs_cells_in_one_session(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("x = 20")
    (tmp_path / "b.py").write_text("print(x + 1)\nFINAL(x * 2)")
    (tmp_path / "ctx.txt").write_text("hello")
    out = subprocess.run([*RLMBOX, "exec", "--json", "--audit-dir", str(tmp_path / "audit"),
                          "--context", str(tmp_path / "ctx.txt"),
                          str(tmp_path / "a.py"), str(tmp_path / "b.py")],
                         capture_output=True, text=True, timeout=120, check=True)
    cells = [json.loads(line) for line in out.stdout.splitlines()]
    assert [c["status"] for c in cells] == ["ok", "ok"]
    assert cells[1]["stdout"] == "21\n"
    assert cells[1]["answer"] == 40


def test_cli_exec_reports_a_missing_cell_file(tmp_path: Path) -> None:
    out = subprocess.run([*RLMBOX, "exec", str(tmp_path / "missing.py")],
                         check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "cannot read" in out.stderr


@pytest.mark.parametrize("preset", ["default", "strict", "dev"])
def test_cli_demo_finds_the_needle_and_names_the_audit_log(tmp_path: Path, preset: str) -> None:
    out = subprocess.run([*RLMBOX, "demo", "--policy", preset,
                          "--audit-dir", str(tmp_path / "audit")],
                         capture_output=True, text=True, timeout=120, check=True)
    assert "answer: 7341" in out.stdout
    assert f"audit log: {tmp_path / 'audit'}" in out.stdout
    verify = subprocess.run([*RLMBOX, "audit", "verify", str(tmp_path / "audit")],
                            check=False, capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_cli_doctor_reports_the_process_backend() -> None:
    out = subprocess.run([*RLMBOX, "doctor", "--json"], capture_output=True, text=True,
                         timeout=120, check=True)
    report = json.loads(out.stdout)
    process = next(b for b in report["backends"] if b["name"] == "process")
    assert process["available"]
    assert "network_none" in process["properties"]


def test_fallback_cannot_write_outside_its_private_work_dir() -> None:
    from rlmbox.sandboxes.base import SandboxSpec

    sandbox = ProcessBackend(use_bwrap=False).create(SandboxSpec())
    try:
        sandbox.send({"t": "init", "id": "i", "config": {}})
        assert sandbox.recv(10) is not None
        sandbox.send({"t": "exec", "id": "c", "code": (
            "import os\nfor p in ('/tmp/rlmbox-fallback-probe', 'here.txt'):\n"
            "    try:\n        open(p, 'w').write('x'); print('wrote', p)\n"
            "    except OSError:\n        print('refused', p)\nprint(os.getcwd())")})
        out = ""
        while (frame := sandbox.recv(10)) is not None and frame["t"] != "result":
            out += frame.get("data", "")
    finally:
        sandbox.kill()
    assert "refused /tmp/rlmbox-fallback-probe" in out
    assert "wrote here.txt" in out
    assert "/var/cache/rlmbox/work/" in out
    assert not Path("/tmp/rlmbox-fallback-probe").exists()
