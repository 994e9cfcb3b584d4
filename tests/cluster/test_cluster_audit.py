"""Every node's audit log verifies together with the driver's index; a record deleted on
one node (even with the chain relinked after it) or a missing node log is detected."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from rlmbox.audit.collected import verify_collected
from rlmbox.audit.files import CHECKPOINTS
from rlmbox.audit.reader import iter_records
from rlmbox.audit.verify import verify_log
from tests.audit.tamper_helpers import read, relink, write
from tests.cluster.conftest import NODES

REPO = Path(__file__).resolve().parents[2]


def _copy(collected: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(collected, target)
    return target


def _verify_cli(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rlmbox.cli.main", "audit", "verify", "--cluster", str(path)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False)


def test_all_node_logs_verify_together_with_the_index(collected: Path) -> None:
    done = _verify_cli(collected)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"index + {NODES} node log(s)" in done.stdout
    report = verify_collected(collected)
    assert report.ok
    assert len(report.nodes) == NODES
    assert all(r.anchors >= 1 for r in report.nodes.values())
    placed = [r for r in iter_records(collected / "index") if r["event"] == "session.place"]
    assert len({r["node"] for r in placed}) == NODES


def test_a_record_deleted_on_one_node_is_detected_even_relinked(
        collected: Path, tmp_path: Path) -> None:
    copy = _copy(collected, tmp_path)
    victim = sorted((copy / "nodes").iterdir())[1]
    lines = read(victim)
    code_exec = next(i for i, line in enumerate(lines) if b'"event":"code.exec"' in line)
    forged = relink(lines[:code_exec] + lines[code_exec + 1:], code_exec)
    write(victim, forged)
    (victim / CHECKPOINTS).unlink(missing_ok=True)   # a forger drops what no longer fits
    assert verify_log(victim, check_bodies=False).ok, "the chain alone cannot see it"

    report = verify_collected(copy)
    assert not report.ok
    bad = {name for name, r in report.nodes.items() if not r.ok}
    assert bad == {f"nodes/{victim.name}"}
    done = _verify_cli(copy)
    assert done.returncode == 1
    assert f"FAIL: nodes/{victim.name}" in done.stdout


def test_a_missing_node_log_is_detected(collected: Path, tmp_path: Path) -> None:
    copy = _copy(collected, tmp_path)
    gone = sorted((copy / "nodes").iterdir())[0]
    shutil.rmtree(gone)
    report = verify_collected(copy)
    assert report.missing == [f"nodes/{gone.name}"]
    assert not report.ok
    assert "is missing" in _verify_cli(copy).stdout
