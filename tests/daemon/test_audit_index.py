"""The audit view reads an index built once and extended (issue 11, finding 10), and a
log it cannot read is an error, never an empty page (finding 11)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlmbox.audit.log import AuditLog
from rlmbox.daemon.audit_index import AuditCorrupt, AuditIndex
from rlmbox.errors import DaemonError
from tests.audit.odd_file_helpers import KINDS, plant, within_deadline

from .conftest import RunningDaemon


def _write(directory: Path, count: int, *, max_file_bytes: int = 64 * 1024 * 1024) -> None:
    with AuditLog(directory, max_file_bytes=max_file_bytes) as log:
        for n in range(count):
            tenant = "a" if n % 4 else "b"
            log.append("host.call", tenant=tenant, session=f"s-{tenant}{n % 3}",
                       bodies={"output": f"body {n}"})


def test_a_page_costs_what_was_appended_since_not_a_rescan(tmp_path: Path) -> None:
    _write(tmp_path, 400, max_file_bytes=8192)   # many rotations
    assert len(list(tmp_path.glob("audit.0*.jsonl"))) > 3
    index = AuditIndex(tmp_path)
    first, more = index.page("b", session=None, after_seq=0, limit=50)
    built = index.bytes_read
    assert built > 0
    assert more
    again, _ = index.page("b", session=None, after_seq=0, limit=50)
    assert index.bytes_read == built   # nothing new: nothing read again
    assert again == first
    assert {e["tenant"] for e in first} == {"b"}
    assert [e["seq"] for e in first] == sorted(e["seq"] for e in first)
    _write(tmp_path, 8, max_file_bytes=8192)
    index.refresh()
    assert 0 < index.bytes_read - built < 8 * 1000   # only the new records were read


def test_pages_walk_every_event_of_a_session_across_rotations(tmp_path: Path) -> None:
    _write(tmp_path, 300, max_file_bytes=4096)
    index = AuditIndex(tmp_path)
    seen: list[int] = []
    after = 0
    while True:
        page, more = index.page("a", session="s-a1", after_seq=after, limit=7)
        seen += [e["seq"] for e in page]
        if not more:
            break
        after = page[-1]["seq"]
    expected = [n + 1 for n in range(300) if n % 4 and n % 3 == 1]
    assert seen == expected
    assert index.tenant_bytes("a") > index.tenant_bytes("b") > 0


def test_a_garbled_line_makes_the_index_fail_and_stay_failed(tmp_path: Path) -> None:
    _write(tmp_path, 10)
    with (tmp_path / "audit.jsonl").open("ab") as log:
        log.write(b"{not json\n")
    index = AuditIndex(tmp_path)
    with pytest.raises(AuditCorrupt, match="not an audit record"):
        index.page("a", session=None, after_seq=0, limit=10)
    with pytest.raises(AuditCorrupt):
        index.page("b", session=None, after_seq=0, limit=10)


def test_a_missing_record_is_a_hole_in_the_chain(tmp_path: Path) -> None:
    _write(tmp_path, 10)
    path = tmp_path / "audit.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:4] + lines[5:]))
    with pytest.raises(AuditCorrupt, match="missing"):
        AuditIndex(tmp_path).refresh()


def test_a_corrupt_log_is_a_500_not_an_empty_page(daemon: RunningDaemon) -> None:
    with daemon.client("alice") as client:
        info = client.create_session()
        client.exec(info["id"], "print(1)")
        events, _ = client.audit(limit=1000)
        assert events
        daemon.daemon._audit.sync()
        with (daemon.daemon.audit_dir / "audit.jsonl").open("ab") as log:
            log.write(b"garbage that is not a record\n")
        with pytest.raises(DaemonError) as failed:
            client.audit(limit=1000)
        assert (failed.value.status, failed.value.type) == (500, "AuditLogCorrupt")
        assert "audit.jsonl" in str(failed.value)
        assert "not an audit record" in str(failed.value)
        assert client.exec(info["id"], "print(2)").stdout == "2\n"   # cells go on
        client.close_session(info["id"])


@pytest.mark.parametrize("kind", KINDS)
def test_an_odd_file_in_a_log_files_place_is_corrupt_not_a_hang(tmp_path: Path,
                                                                 kind: str) -> None:
    """A FIFO, directory, socket or symlink named like a rotated file: the audit view
    answers with an error naming it, rather than wait on it or read ``/dev/zero``."""
    logdir = tmp_path / "audit"
    _write(logdir, 40, max_file_bytes=2048)
    plant(kind, logdir / "audit.000001.jsonl", tmp_path)
    failed = within_deadline(lambda: AuditIndex(logdir).refresh(), tmp_path)
    assert isinstance(failed, AuditCorrupt), repr(failed)
    assert "audit.000001.jsonl" in str(failed)
