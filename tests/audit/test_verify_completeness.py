"""``audit verify`` says what it can prove: a log whose tail no checkpoint signs is not OK.

Records after the newest signed checkpoint could have been cut off (or the checkpoints
deleted with them) without a trace, so the verdict for such a log is INCOMPLETE with exit 1,
unless the operator asks for the weaker check (``--allow-unsealed``, e.g. for a live log).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlmbox.audit.files import CHECKPOINTS, CURRENT
from rlmbox.audit.log import AuditLog
from rlmbox.cli.main import main

RECORDS = 181


@pytest.fixture
def closed_log(tmp_path: Path) -> Path:
    directory = tmp_path / "audit"
    _write_log(directory, 10, RECORDS)
    return directory


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_an_intact_closed_log_is_ok(closed_log: Path, capsys: pytest.CaptureFixture[str]
                                    ) -> None:
    assert main(["audit", "verify", str(closed_log)]) == 0
    assert capsys.readouterr().out.startswith(f"OK: {RECORDS} records")


def test_a_log_cut_short_with_its_checkpoints_deleted_is_incomplete(
        closed_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = closed_log / CURRENT
    log.write_bytes(b"".join(_lines(log)[:20]))
    (closed_log / CHECKPOINTS).unlink()
    assert main(["audit", "verify", str(closed_log)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("INCOMPLETE: records 1..20 are intact")
    assert "no signed checkpoint covers them" in out
    assert "--allow-unsealed" in out
    assert main(["audit", "verify", str(closed_log), "--allow-unsealed"]) == 0


def test_deleting_the_last_checkpoint_line_is_incomplete(
        closed_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoints = closed_log / CHECKPOINTS
    checkpoints.write_bytes(b"".join(_lines(checkpoints)[:-1]))
    assert main(["audit", "verify", str(closed_log)]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"INCOMPLETE: records 1..{RECORDS} are intact")
    assert f"records {RECORDS}..{RECORDS} are not covered by a signed checkpoint" in out


def _write_log(directory: Path, sync_every: int, stop_syncing_after: int) -> None:
    with AuditLog(directory, checkpoint_every=sync_every, flush_interval_s=0.0) as log:
        for index in range(1, RECORDS + 1):
            log.append("host.call", session="s", function="llm_query", n=index)
            if index % sync_every == 0 and index <= stop_syncing_after:
                log.sync()   # a checkpoint at this seq


@pytest.mark.parametrize(("last_checkpoint_before", "kind", "first_bad"), [
    (180, "edited", 181),      # record 180 is signed: only 181 can differ
    (170, "rewritten", 171),   # 171..181 are signed only as a whole, by the close
])
def test_editing_the_last_record_names_what_its_checkpoint_proves(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], last_checkpoint_before: int,
        kind: str, first_bad: int) -> None:
    directory = tmp_path / "audit"
    _write_log(directory, 10, last_checkpoint_before)
    log = directory / CURRENT
    lines = _lines(log)
    last = json.loads(lines[-1])
    last["function"] = "forged"
    lines[-1] = (json.dumps(last, sort_keys=True, separators=(",", ":")) + "\n").encode()
    log.write_bytes(b"".join(lines))
    assert main(["audit", "verify", str(directory), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert (report["kind"], report["first_bad_seq"], report["last_bad_seq"]) == (
        kind, first_bad, RECORDS)
