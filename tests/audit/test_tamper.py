"""Tampering of every kind is detected, and verify names the first bad record and why."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from rlmbox.audit.bodies import BodyStore
from rlmbox.audit.canonical import record_digest
from rlmbox.audit.checkpoint import load_signer, make_checkpoint_line
from rlmbox.audit.log import AuditLog
from rlmbox.audit.verify import verify_log
from rlmbox.errors import AuditError
from tests.audit.tamper_helpers import BODY_SEQ, build, encode, read, record, relink, write


@pytest.fixture
def built(logdir: Path) -> Path:
    build(logdir)
    return logdir


def test_an_untouched_log_verifies(built: Path) -> None:
    report = verify_log(built)
    assert report.ok, report.reason
    assert (report.events, report.last_seq, report.checkpoints) == (12, 12, 3)
    assert report.unsealed_events == 0
    assert report.missing_bodies == []


def test_an_edited_field_names_the_edited_record(built: Path) -> None:
    lines = read(built)
    obj = record(lines[5])
    obj["function"] = "something_else"
    lines[5] = encode(obj)
    write(built, lines)
    report = verify_log(built)
    assert (report.ok, report.kind, report.first_bad_seq) == (False, "edited", 6)


def test_a_non_canonical_edit_is_malformed_at_that_record(built: Path) -> None:
    lines = read(built)
    lines[5] = lines[5].replace(b'"n":6', b'"n": 6')
    write(built, lines)
    report = verify_log(built)
    assert (report.kind, report.first_bad_seq) == ("malformed", 6)


def test_a_deleted_record_is_named(built: Path) -> None:
    lines = read(built)
    del lines[5]
    write(built, lines)
    report = verify_log(built)
    assert (report.kind, report.first_bad_seq) == ("deleted", 6)


def test_reordered_records_are_named(built: Path) -> None:
    lines = read(built)
    lines[5], lines[6] = lines[6], lines[5]
    write(built, lines)
    report = verify_log(built)
    assert (report.kind, report.first_bad_seq) == ("reordered", 6)


def test_a_truncated_tail_is_caught_by_the_signed_checkpoint(built: Path) -> None:
    write(built, read(built)[:9])
    report = verify_log(built)
    assert (report.ok, report.kind, report.first_bad_seq) == (False, "truncated", 10)


def test_a_spliced_record_with_a_correct_link_is_caught_by_the_next_link(built: Path) -> None:
    lines = read(built)
    forged = record(lines[6])
    forged["function"] = "exfiltrate"
    forged["prev"] = record_digest(lines[5])  # a correct link to record 6
    lines.insert(6, encode(forged))
    write(built, lines)
    report = verify_log(built)
    assert (report.kind, report.first_bad_seq) == ("spliced", 7)


def test_a_replaced_record_with_recomputed_hash_is_caught_by_the_next_link(built: Path) -> None:
    lines = read(built)
    forged = record(lines[5])
    forged["decision"] = "permit"
    lines[5] = encode(forged)  # prev still correct: only record 7's link exposes it
    write(built, lines)
    report = verify_log(built)
    assert (report.kind, report.first_bad_seq) == ("edited", 6)


def test_a_splice_with_the_whole_chain_recomputed_is_caught_by_a_checkpoint(built: Path) -> None:
    lines = read(built)
    forged = record(lines[6])
    forged["function"] = "exfiltrate"
    lines.insert(6, encode(forged))
    write(built, relink(lines, 6)[:12])  # same length, all links valid
    report = verify_log(built)
    assert (report.ok, report.kind) == (False, "rewritten")
    # The last checkpoint that still matches is at seq 4: the forgery is named as after it.
    assert report.first_bad_seq == 5


def test_an_edited_checkpointed_record_is_named_itself(built: Path) -> None:
    lines = read(built)
    obj = record(lines[7])  # seq 8 carries a checkpoint
    obj["n"] = 0
    lines[7] = encode(obj)
    write(built, lines)
    report = verify_log(built)
    assert (report.kind, report.first_bad_seq) == ("edited", 8)


def test_an_edit_of_the_last_record_is_caught_by_the_final_checkpoint(built: Path) -> None:
    lines = read(built)
    obj = record(lines[-1])
    obj["n"] = 0
    lines[-1] = encode(obj)
    write(built, lines)
    report = verify_log(built)
    assert (report.kind, report.first_bad_seq) == ("rewritten", 9)


def test_a_removed_body_is_reported_missing_and_the_chain_still_verifies(built: Path) -> None:
    digest = record(read(built)[BODY_SEQ - 1])["code_sha256"]
    assert BodyStore(built / "bodies").erase(digest)
    report = verify_log(built)
    assert report.ok
    assert [(m.seq, m.name, m.sha256) for m in report.missing_bodies] == [
        (BODY_SEQ, "code", digest)]


def test_an_altered_body_fails(built: Path) -> None:
    digest = record(read(built)[BODY_SEQ - 1])["code_sha256"]
    original = BodyStore(built / "bodies").read(digest)
    assert original is not None
    [segment] = (built / "bodies").glob("segment-*")
    forged = b"print('forged')"[: len(original)].ljust(len(original), b" ")
    segment.write_bytes(segment.read_bytes().replace(original, forged))
    report = verify_log(built)
    assert (report.kind, report.first_bad_seq) == ("bad_body", BODY_SEQ)


def _rewrite_checkpoints(logdir: Path, edit: object) -> None:
    path = logdir / "checkpoints.jsonl"
    cps = [json.loads(line) for line in path.read_bytes().splitlines()]
    edit(cps)  # type: ignore[operator]
    path.write_bytes(b"".join(encode(cp) + b"\n" for cp in cps))


def test_a_bad_checkpoint_signature_fails(built: Path) -> None:
    def flip(cps: list[dict[str, object]]) -> None:
        sig = bytearray(base64.b64decode(str(cps[1]["sig"])))
        sig[0] ^= 1
        cps[1]["sig"] = base64.b64encode(bytes(sig)).decode()
    _rewrite_checkpoints(built, flip)
    report = verify_log(built)
    assert (report.kind, report.first_bad_seq) == ("bad_signature", 8)
    assert "bad signature" in report.reason


def test_a_removed_checkpoint_breaks_the_checkpoint_chain(built: Path) -> None:
    _rewrite_checkpoints(built, lambda cps: cps.pop(1))
    report = verify_log(built)
    assert report.kind == "bad_signature"
    assert "does not link" in report.reason


def test_checkpoints_re_signed_by_another_key_fail_against_the_pinned_key(
        built: Path, tmp_path: Path) -> None:
    pinned = (built / "audit.pub").read_bytes()
    lines = read(built)
    obj = record(lines[-1])
    obj["n"] = 0
    lines[-1] = encode(obj)
    write(built, lines)
    # The forger signs a fresh checkpoint chain with a key of their own, replacing audit.pub.
    forger_key = tmp_path / "forger.pem"
    forger_key.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    signer = load_signer(tmp_path, forger_key)
    (built / "audit.pub").write_bytes((tmp_path / "audit.pub").read_bytes())
    cp = make_checkpoint_line(signer, seq=12, head=record_digest(lines[-1]), prev="0" * 64,
                              ts="2025-01-01T00:00:00.000000Z")
    (built / "checkpoints.jsonl").write_bytes(cp + b"\n")
    assert verify_log(built).ok  # against the replaced key in the directory: fooled
    report = verify_log(built, public_key=pinned)
    assert (report.ok, report.kind) == (False, "bad_signature")


def test_hmac_checkpoints_need_the_right_key(logdir: Path) -> None:
    key = b"k" * 32
    build(logdir, key=key)
    assert verify_log(logdir, hmac_key=key).ok
    no_key = verify_log(logdir)
    assert (no_key.ok, no_key.kind) == (False, "bad_signature")
    wrong = verify_log(logdir, hmac_key=b"w" * 32)
    assert (wrong.ok, wrong.kind) == (False, "bad_signature")


def test_opening_a_truncated_log_for_writing_is_refused(built: Path) -> None:
    write(built, read(built)[:9])
    with pytest.raises(AuditError, match="truncated"):
        AuditLog(built)


def test_a_deleted_rotated_file_is_named(logdir: Path) -> None:
    with AuditLog(logdir, max_file_bytes=1500) as log:
        for i in range(40):
            log.append("e", n=i)
            log.sync()
    rotated = sorted(logdir.glob("audit.0*.jsonl"))
    assert len(rotated) >= 3
    assert verify_log(logdir).ok
    first_missing = record(rotated[1].read_bytes().splitlines()[0])["seq"]
    rotated[1].unlink()
    report = verify_log(logdir)
    assert (report.kind, report.first_bad_seq) == ("deleted", first_missing)


def test_garbage_instead_of_a_record_is_malformed_not_a_crash(built: Path) -> None:
    lines = read(built)
    lines[2] = b"\xff\xfe{not json"
    write(built, lines)
    report = verify_log(built)
    assert (report.kind, report.first_bad_seq) == ("malformed", 3)
