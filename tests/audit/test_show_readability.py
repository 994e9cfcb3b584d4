"""``audit show`` on a real log: ``--limit``, long bodies folded, and a filter that matches
nothing says so and exits 1 (a typo in ``--session`` must not look like an empty history)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlmbox.audit.log import AuditLog
from rlmbox.cli.main import main


@pytest.fixture
def log(tmp_path: Path) -> Path:
    directory = tmp_path / "audit"
    with AuditLog(directory) as audit:
        for index in range(5):
            audit.append("code.exec", session="s1", bodies={"code": f"x = {index}"})
        audit.append("cell.result", session="s1",
                     bodies={"stdout": "\n".join(f"line {n}" for n in range(100))})
    return directory


def test_limit_shows_the_last_records(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "show", str(log), "--limit", "2", "--fold", "0"]) == 0
    out = capsys.readouterr().out
    headers = [line for line in out.splitlines() if line.startswith("#")]
    assert [h.split()[0] for h in headers] == ["#5", "#6"]
    assert "4 earlier record(s) not shown (--limit 2)" in out


def test_long_bodies_are_folded_unless_asked(log: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "show", str(log), "--event", "cell.result"]) == 0
    out = capsys.readouterr().out
    assert "| line 0" in out
    assert "| line 99" in out
    assert "| line 50" not in out
    assert "[80 more line(s) folded: --fold 0 shows all]" in out
    assert main(["audit", "show", str(log), "--event", "cell.result", "--fold", "0"]) == 0
    assert "| line 50" in capsys.readouterr().out


def test_a_filter_that_matches_nothing_says_so(log: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "show", str(log), "--session", "s-typo"]) == 1
    captured = capsys.readouterr()
    assert "no record matches --session s-typo" in captured.err
    assert "6 record(s) in the log" in captured.err
