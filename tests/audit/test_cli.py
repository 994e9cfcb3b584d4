"""``rlmbox audit verify|show|stats`` through the real CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlmbox.audit.log import AuditLog
from rlmbox.audit.verify import verify_log
from rlmbox.cli.main import main
from tests.audit.tamper_helpers import encode, read, record, write


@pytest.fixture
def session_log(logdir: Path) -> Path:
    with AuditLog(logdir) as log:
        log.append("session.create", session="root", tenant="acme", policy_sha256="ab" * 32)
        log.append("code.exec", session="root", bodies={"code": "answer = llm_query('hi')"})
        log.append("host.call", session="root", function="llm_query", decision="permit",
                   rule_ids=["allow-llm"], tokens_in=100, tokens_out=20, cost_usd=0.5)
        log.append("session.create", session="child", parent="root", depth=1)
        log.append("host.call", session="child", parent="root", depth=1, function="llm_query",
                   decision="deny", rule_ids=["no-deep-llm"])
        log.append("host.call", session="other", function="context.read", decision="permit")
    return logdir


def test_verify_exits_0_when_intact(session_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "verify", str(session_log)]) == 0
    assert capsys.readouterr().out.startswith("OK: 6 records")


def test_verify_names_the_first_bad_record(session_log: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    lines = read(session_log)
    obj = record(lines[2])
    obj["decision"] = "deny"
    lines[2] = encode(obj)
    write(session_log, lines)
    assert main(["audit", "verify", str(session_log / "audit.jsonl")]) == 1
    out = capsys.readouterr().out
    assert "first bad record: seq 3 (edited)" in out


def test_verify_json_report(session_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "verify", "--json", str(session_log)]) == 0
    assert json.loads(capsys.readouterr().out)["events"] == 6


def test_verify_with_a_pinned_public_key(session_log: Path) -> None:
    assert main(["audit", "verify", "--public-key", str(session_log / "audit.pub"),
                 str(session_log)]) == 0


def test_verify_of_a_missing_log_is_a_clear_error(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "verify", str(tmp_path / "nothing")]) == 2
    assert "no audit log" in capsys.readouterr().err


def test_show_inlines_bodies_and_follows_the_session_tree(
        session_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "show", str(session_log), "--session", "root"]) == 0
    out = capsys.readouterr().out
    assert "| answer = llm_query('hi')" in out
    assert "session=child" in out  # descendants of root are included
    assert "session=other" not in out


def test_show_filters_by_event_as_json(session_log: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "show", str(session_log), "--event", "host.call", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["seq"] for r in rows] == [3, 5, 6]


def test_stats_counts_calls_denials_tokens_and_cost(
        session_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "stats", str(session_log), "--json"]) == 0
    rows = {(r["session"], r["function"]): r for r in json.loads(capsys.readouterr().out)}
    assert rows["root", "llm_query"] == {"session": "root", "function": "llm_query", "calls": 1,
                                         "denials": 0, "tokens_in": 100, "tokens_out": 20,
                                         "cost_usd": 0.5}
    assert rows["child", "llm_query"]["denials"] == 1
    assert rows["other", "context.read"]["calls"] == 1
    assert main(["audit", "stats", str(session_log)]) == 0
    assert "total" in capsys.readouterr().out


ESCAPES = "\x1b]0;owned\x07\x1b[2J\x9b31m\r\u202eevil"


def test_show_escapes_terminal_control_characters(logdir: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Sandbox-controlled bodies and attributes with terminal escapes (OSC title, clear
    screen, C1 CSI, carriage return, a bidi override) are printed escaped, never raw."""
    with AuditLog(logdir) as log:
        log.append("cell.result", session="s", error=ESCAPES, bodies={"stdout": ESCAPES + "\n"})
    for flags in ([], ["--json"]):
        assert main(["audit", "show", str(logdir), *flags]) == 0
        out = capsys.readouterr().out
        for char in ("\x1b", "\x07", "\x9b", "\r", "\u202e"):
            assert char not in out, (flags, repr(char))
    assert main(["audit", "show", str(logdir)]) == 0
    out = capsys.readouterr().out
    assert "| \\x1b]0;owned\\x07\\x1b[2J\\x9b31m\\x0d\\u202eevil" in out


def test_verify_says_when_the_key_is_not_pinned(session_log: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Without a pinned key, verify checks checkpoints against audit.pub beside the log and
    says so: OK, but 'not pinned', with a warning naming how to pin."""
    assert main(["audit", "verify", str(session_log)]) == 0
    captured = capsys.readouterr()
    assert "(not pinned)" in captured.out
    assert "--public-key" in captured.err


def test_verify_takes_the_pinned_key_from_the_environment(
        session_log: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """RLMBOX_AUDIT_PUBLIC_KEY pins the key: the log's own key passes as 'pinned', a
    replaced audit.pub does not fool it."""
    pinned = tmp_path / "pinned.pub"
    pinned.write_bytes((session_log / "audit.pub").read_bytes())
    monkeypatch.setenv("RLMBOX_AUDIT_PUBLIC_KEY", str(pinned))
    assert main(["audit", "verify", str(session_log)]) == 0
    captured = capsys.readouterr()
    assert "key: pinned public key" in captured.out
    assert "not pinned" not in captured.out + captured.err
    other_dir = tmp_path / "other"
    with AuditLog(other_dir) as log:   # another key pair signs this log
        log.append("session.create", session="x")
    monkeypatch.setenv("RLMBOX_AUDIT_PUBLIC_KEY", str(pinned))
    assert main(["audit", "verify", str(other_dir)]) == 1


def test_erase_removes_a_body_and_the_log_still_verifies(
        session_log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    digest = record(read(session_log)[1])["code_sha256"]
    assert main(["audit", "erase", str(session_log), digest]) == 0
    assert b"llm_query('hi')" not in b"".join(
        p.read_bytes() for p in (session_log / "bodies").rglob("*") if p.is_file())
    assert main(["audit", "verify", str(session_log)]) == 0
    assert "is missing (erased?)" in capsys.readouterr().err
    assert main(["audit", "erase", str(session_log), digest]) == 1   # nothing left to erase
    assert main(["audit", "erase", str(session_log), "not-a-digest"]) == 2


def test_a_body_erased_while_the_log_is_open_is_stored_again_when_it_recurs(
        logdir: Path) -> None:
    """The writer does not take an erased body for stored (the new record would name a
    missing body); stored again, it serves every record naming its digest."""
    with AuditLog(logdir) as log:
        first = log.append("a", bodies={"code": "print('again')"})
        log.sync()
        assert main(["audit", "erase", str(logdir), first["code_sha256"]]) == 0
        assert verify_log(logdir, check_bodies=True).missing_bodies != []
        log.append("b", bodies={"code": "print('again')"})
    assert verify_log(logdir).missing_bodies == []
