"""Off-host anchors catch what signed checkpoints cannot: a rewrite by someone who holds
the signing key (root on the host), re-signed from scratch."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rlmbox.audit.anchor import anchor_line, load_anchors
from rlmbox.audit.checkpoint import KEY_FILE
from rlmbox.audit.files import log_files
from rlmbox.audit.log import AuditLog
from rlmbox.audit.verify import verify_log
from rlmbox.cli.main import main
from rlmbox.errors import AuditError


def _write(directory: Path, events: list[str]) -> None:
    with AuditLog(directory, checkpoint_every=2) as log:
        for name in events:
            log.append("host.call", session="s", function=name, decision="permit")


def _rewrite_with_the_stolen_key(directory: Path, events: list[str]) -> None:
    """What root on the host can do: keep the key, throw the log away, write another one
    and sign it with the same key. Checkpoints alone accept the result."""
    key = (directory / KEY_FILE).read_bytes()
    shutil.rmtree(directory)
    directory.mkdir(mode=0o700)
    (directory / KEY_FILE).write_bytes(key)
    (directory / KEY_FILE).chmod(0o600)
    _write(directory, events)


def _anchor_file(directory: Path, tmp: Path) -> Path:
    path = tmp / "anchors.jsonl"
    with path.open("a") as handle:
        handle.write(anchor_line(verify_log(directory)) + "\n")
    return path


def test_the_anchored_log_verifies_as_it_grows(logdir: Path, tmp_path: Path) -> None:
    _write(logdir, ["a", "b", "c"])
    anchors = _anchor_file(logdir, tmp_path)
    _write(logdir, ["d", "e"])                       # the log grows after the anchor
    anchors = _anchor_file(logdir, tmp_path)         # and is anchored again
    report = verify_log(logdir, anchors=load_anchors(anchors))
    assert report.ok, report.reason
    assert report.anchors == 2


def test_a_resigned_rewrite_passes_checkpoints_but_not_the_anchor(logdir: Path,
                                                                  tmp_path: Path) -> None:
    _write(logdir, ["a", "b", "c", "d"])
    anchors = load_anchors(_anchor_file(logdir, tmp_path))
    _rewrite_with_the_stolen_key(logdir, ["a", "B", "c", "d", "e"])
    assert verify_log(logdir).ok          # the limit anchors exist for: signatures hold
    report = verify_log(logdir, anchors=anchors)
    assert not report.ok
    assert report.kind == "rewritten"
    assert report.first_bad_seq == 4      # the anchored seq; the chain hides which one changed
    assert "off-host anchor" in report.reason


def test_a_resigned_shorter_log_is_truncated(logdir: Path, tmp_path: Path) -> None:
    _write(logdir, ["a", "b", "c", "d", "e", "f"])
    anchors = load_anchors(_anchor_file(logdir, tmp_path))
    _rewrite_with_the_stolen_key(logdir, ["a", "b", "c"])
    report = verify_log(logdir, anchors=anchors)
    assert not report.ok
    assert report.kind == "truncated"
    assert "anchor names seq" in report.reason


def test_an_edited_record_before_the_anchor_is_named(logdir: Path, tmp_path: Path) -> None:
    _write(logdir, ["a", "b", "c"])
    anchors = load_anchors(_anchor_file(logdir, tmp_path))
    [path] = log_files(logdir)
    path.write_bytes(path.read_bytes().replace(b'"function":"b"', b'"function":"x"'))
    report = verify_log(logdir, anchors=anchors)
    assert not report.ok
    assert report.first_bad_seq == 2       # the chain still names the edited record


@pytest.mark.parametrize(("content", "message"), [
    ("not json\n", "line 1: not JSON"),
    ('{"seq": 0, "head": "' + "a" * 64 + '"}\n', "positive integer"),
    ('{"seq": 3, "head": "xyz"}\n', "SHA-256"),
    ('{"seq": 3}\n', "seq, head and ts"),
    ('{"seq": 3, "head": "' + "a" * 64 + '", "extra": 1}\n', "seq, head and ts"),
    ('{"seq": 3, "head": "' + "a" * 64 + '"}\n{"seq": 3, "head": "' + "b" * 64 + '"}\n',
     "anchored twice"),
    ("\n\n", "holds no anchors"),
])
def test_a_bad_anchor_file_is_refused_with_its_line(tmp_path: Path, content: str,
                                                    message: str) -> None:
    path = tmp_path / "anchors.jsonl"
    path.write_text(content)
    with pytest.raises(AuditError, match=message):
        load_anchors(path)


def test_a_failing_log_is_not_anchored(logdir: Path) -> None:
    _write(logdir, ["a", "b"])
    [path] = log_files(logdir)
    path.write_bytes(path.read_bytes().replace(b'"function":"a"', b'"function":"z"'))
    with pytest.raises(AuditError, match="fails verification"):
        anchor_line(verify_log(logdir))


def test_cli_anchor_then_verify(logdir: Path, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    _write(logdir, ["a", "b", "c"])
    anchors = tmp_path / "off-host" / "anchors.jsonl"
    anchors.parent.mkdir()
    assert main(["audit", "anchor", str(logdir), "--append", str(anchors)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert json.loads(anchors.read_text()) == printed
    assert main(["audit", "verify", str(logdir), "--anchors", str(anchors)]) == 0
    assert "1 off-host anchor(s) held" in capsys.readouterr().out
    _rewrite_with_the_stolen_key(logdir, ["x", "y", "z"])
    assert main(["audit", "verify", str(logdir)]) == 0
    capsys.readouterr()
    assert main(["audit", "verify", str(logdir), "--anchors", str(anchors)]) == 1
    assert "(rewritten)" in capsys.readouterr().out
    anchors.write_text("garbage\n")
    assert main(["audit", "verify", str(logdir), "--anchors", str(anchors)]) == 2


def test_synced_head_is_the_head_verify_reports(tmp_path: Path) -> None:
    """What the cluster anchors without reading a node log back (``synced_head``) is the
    head that verifying the log finds."""
    with AuditLog(tmp_path / "log") as log:
        for i in range(5):
            log.append("host.call", session="s", n=i)
        seq, head = log.synced_head()
        report = verify_log(tmp_path / "log", check_bodies=False)
    assert (seq, head) == (report.last_seq, report.head)
    assert seq == 5
