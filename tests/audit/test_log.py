"""AuditLog: records, chaining, durability handshake, lifecycle."""

from __future__ import annotations

import itertools
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest

from rlmbox.audit.bodies import BodyStore
from rlmbox.audit.canonical import GENESIS, canonical_bytes, record_digest
from rlmbox.audit.log import AuditLog
from rlmbox.audit.verify import verify_log
from rlmbox.errors import AuditError, AuditRecordInvalid, AuditWriteError

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(raw) for raw in path.read_bytes().splitlines()]


def test_record_carries_every_required_field(log: AuditLog) -> None:
    """Each record has seq, ts, event, session, parent, depth, tenant, prev, severity + attrs."""
    record = log.append("host.call", session="s1", parent="s0", depth=1, tenant="t",
                        function="llm_query", budget={"before": 3, "after": 2})
    log.sync()
    assert record["seq"] == 1
    assert record["prev"] == GENESIS
    assert TS.match(str(record["ts"]))
    assert record["severity"] == "INFO"
    assert (record["session"], record["parent"], record["depth"], record["tenant"]) == (
        "s1", "s0", 1, "t")
    assert record["budget"] == {"before": 3, "after": 2}
    assert lines(log.path) == [record]


def test_each_prev_is_the_digest_of_the_previous_canonical_line(log: AuditLog) -> None:
    for i in range(10):
        log.append("code.exec", session="s", n=i)
    log.sync()
    raw = log.path.read_bytes().splitlines()
    for before, after in itertools.pairwise(raw):
        assert json.loads(after)["prev"] == record_digest(before)
        assert canonical_bytes(json.loads(before)) == before


def test_bodies_are_stored_by_digest_and_referenced(log: AuditLog) -> None:
    record = log.append("code.exec", session="s", bodies={"code": "print(1)", "blob": b"\x00\xff"})
    log.sync()
    assert record["bodies"] == ["blob", "code"]
    assert record["code_bytes"] == 8
    stored = BodyStore(log.directory / "bodies").read(str(record["code_sha256"]))
    assert stored == b"print(1)"
    assert "print(1)" not in log.path.read_text()


def test_denial_defaults_to_warn_severity(log: AuditLog) -> None:
    assert log.append("host.call", decision="deny")["severity"] == "WARN"
    assert log.append("cell.result", outcome="error")["severity"] == "ERROR"
    assert log.append("cell.result", severity="DEBUG")["severity"] == "DEBUG"


@pytest.mark.parametrize("attrs", [{"seq": 5}, {"prev": "x"}, {"ts": "now"}, {"_bodies": 1},
                                   {"x": float("nan")}, {"x": object()}, {"x": {1: 2}},
                                   {"severity": "LOUD"}])
def test_unrecordable_events_are_refused_without_burning_a_seq(
        log: AuditLog, attrs: dict[str, Any]) -> None:
    with pytest.raises(AuditRecordInvalid):
        log.append("bad", **attrs)
    assert log.append("good")["seq"] == 1


def test_append_after_close_raises_and_close_is_idempotent(logdir: Path) -> None:
    log = AuditLog(logdir)
    log.append("a")
    log.close()
    log.close()
    with pytest.raises(AuditWriteError):
        log.append("b")


def test_reopen_continues_the_chain(logdir: Path) -> None:
    with AuditLog(logdir) as log:
        first = log.append("a")
    with AuditLog(logdir) as log:
        second = log.append("b")
    assert second["seq"] == 2
    assert second["prev"] == record_digest(canonical_bytes(first))
    assert verify_log(logdir).ok


def test_second_writer_on_the_same_directory_is_refused(log: AuditLog) -> None:
    with pytest.raises(AuditError, match="another writer"):
        AuditLog(log.directory)


def test_directory_and_key_are_private(log: AuditLog) -> None:
    assert stat.S_IMODE(os.stat(log.directory).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(log.directory / "audit.key").st_mode) == 0o600
    log.append("a")
    log.sync()
    assert stat.S_IMODE(os.stat(log.path).st_mode) == 0o600


def test_sync_makes_every_appended_event_visible_on_disk(log: AuditLog) -> None:
    for i in range(100):
        log.append("e", n=i)
    log.sync()
    assert log.durable_seq == 100
    assert len(lines(log.path)) == 100
