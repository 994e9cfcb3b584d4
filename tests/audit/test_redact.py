"""Secrets never reach any file under the log directory."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlmbox.audit.log import AuditLog
from rlmbox.audit.redact import (
    BEARER_SEPARATOR,
    DEFAULT_PATTERNS,
    PATTERN_ANCHORS,
    REDACTED,
    Redactor,
)
from rlmbox.audit.verify import verify_log

SECRET = "prov-key-7f3a9c1e5b2d4f6a8c0e"  # noqa: S105  (fake; no known shape)
LATE = "late-secret-0123456789abcdef"


def all_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file())


def test_a_configured_secret_appears_in_no_file(logdir: Path) -> None:
    with AuditLog(logdir, secrets=[SECRET], checkpoint_every=2) as log:
        log.append("lm.request", session=f"s-{SECRET}", model="m", api_key=SECRET,
                   headers={"x-api-key": SECRET, SECRET: "as a key"}, args=[1, f"k={SECRET}"],
                   bodies={"prompt": f"use {SECRET} please", "raw": SECRET.encode() + b"\xff"})
        log.append(f"event-{SECRET}", bodies={SECRET: "body named after the secret"})
        log.add_secret(LATE)
        log.append("lm.response", text=f"echo {LATE}", bodies={"completion": LATE})
    data = all_bytes(logdir)
    assert SECRET.encode() not in data
    assert LATE.encode() not in data
    assert REDACTED.encode() in data
    assert verify_log(logdir).ok


@pytest.mark.parametrize("credential", [
    "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz012345",
    "sk-proj-AbCdEfGhIjKlMnOpQrStUvWx",
    "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc",
    "AKIAABCDEFGHIJKLMNOP",
    "ghp_" + "a" * 36,
])
def test_well_known_credential_shapes_are_redacted_unconfigured(
        logdir: Path, credential: str) -> None:
    with AuditLog(logdir) as log:
        log.append("host.call", summary=f"auth: {credential}", bodies={"code": credential})
    assert credential.encode() not in all_bytes(logdir)


def test_the_longest_overlapping_secret_is_redacted_whole() -> None:
    redactor = Redactor(["abcd", "abcdefgh"], patterns=())
    assert redactor.text("xabcdefghx") == f"x{REDACTED}x"


def test_an_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        Redactor([""])


def test_a_secret_with_json_escaped_characters_is_redacted(logdir: Path) -> None:
    odd = 'we"ird\\key\nwith-escapes-0123'
    with AuditLog(logdir, secrets=[odd]) as log:
        log.append("lm.request", api_key=odd, note=f"x{odd}y")
    data = all_bytes(logdir)
    assert odd.encode() not in data
    assert b'we\\"ird' not in data  # nor its JSON-escaped form


def test_the_fast_path_skips_only_events_without_any_candidate() -> None:
    redactor = Redactor([SECRET])
    assert not redactor.needs({"a": "plain", "n": 1, "l": ["x", {"k": "v"}]})
    assert redactor.needs({"deep": [{"k": f"..{SECRET}.."}]})
    assert redactor.needs({"k": "line\nbreak"})  # escapes present: walk to be sure
    assert redactor.needs({"k": "sk-ant-api03-AbCdEfGhIjKlMnOpQrSt"})


_FRAGMENTS = ["sk-", "SK-", "ant-", "Bearer", "bEaReR", "BEARER", " ", "\t", "\u00a0", "\u2003",
              "AKIA", "akia", "gh", "GH", "p_", "o_", "u_", "s_", "r_", "P_", "A" * 8, "x7" * 6,
              "Z" * 9, "=", ".", "-", "_", "é", "\n", "\x1c", "\\t", "\\u00A0", "\\", "github",
              "_pat_", "GITHUB_PAT_"]


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=14).map("".join))
def test_no_text_a_pattern_matches_lacks_the_pattern_anchors(text: str) -> None:
    """The anchor pre-check never skips a text the credential patterns would cut."""
    redactor = Redactor()
    joined = "|".join(DEFAULT_PATTERNS)
    if re.search(joined, text):
        assert redactor.needs({"k": text})
        assert redactor.text(text) != text
    # A body is cut where and only where the same text in an attribute would be.
    assert bool(redactor.body(text).spans) == bool(re.search(joined, text))


def test_every_default_pattern_has_anchors() -> None:
    """A pattern added without anchors would silently turn the pre-check off, or worse."""
    assert set(PATTERN_ANCHORS) == set(DEFAULT_PATTERNS)
    for pattern, anchors in PATTERN_ANCHORS.items():
        assert anchors, pattern
        for anchor in anchors:
            assert anchor, pattern
            assert anchor == anchor.lower(), pattern


def test_a_host_call_budget_does_not_send_the_pre_check_to_the_full_scan(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every host-call record carries ``in_flight`` (budget_before/after): with ``gh`` as
    the GitHub pattern's anchor ("fli*gh*t") each such record paid the full pattern scan,
    14 of the 17 us of its pre-check; the anchors are the pattern's own prefixes now."""
    redactor = Redactor()
    scans: list[str] = []
    pattern = re.compile("|".join(DEFAULT_PATTERNS))

    class CountingPattern:
        def search(self, text: str) -> re.Match[str] | None:
            scans.append(text)
            return pattern.search(text)

    monkeypatch.setattr(redactor, "_pattern", CountingPattern())
    budget = {"tree": {"calls": 3, "in_flight": 0, "cost_usd": 0.0}}
    assert not redactor.needs({"event": "host.call.start", "budget_before": budget,
                               "note": "a highlight, high up"})
    assert scans == []
    assert redactor.needs({"k": "ghp_" + "A" * 36})
    assert len(scans) == 1


def test_the_case_blind_bearer_matches_no_letter_outside_ascii() -> None:
    """Why the anchors may be compared after ASCII-only lower-casing."""
    letters = re.compile("(?i:[bear])")
    assert [c for c in map(chr, range(0x110000)) if letters.fullmatch(c)] == list("ABERaber")


def test_a_bearer_token_after_a_unicode_space_is_still_found() -> None:
    """The pre-check serialises to bytes, but matches like the text pattern (\\s is Unicode)."""
    token = "Bearer\u00a0eyJhbGciOiJIUzI1NiJ9abcdef"  # noqa: S105  (fake, for the pattern)
    assert Redactor().needs({"k": token})


def test_custom_patterns_are_scanned_without_anchors() -> None:
    redactor = Redactor(patterns=[r"tok_[0-9]{6}"])
    assert redactor.needs({"k": "see tok_123456"})
    assert redactor.body(b"see tok_123456").spans


def test_the_bearer_separator_takes_every_space_and_its_json_escape() -> None:
    """Every code point ``\\s`` takes, as such and JSON-escaped (either way json.dumps
    writes it), separates ``Bearer`` from its token; a letter does not."""
    separator = re.compile(BEARER_SEPARATOR)
    spaces = [chr(c) for c in range(0x110000) if re.fullmatch(r"\s", chr(c))]
    assert len(spaces) > 20
    for space in spaces:
        for form in (space, json.dumps(space)[1:-1], json.dumps(space, ensure_ascii=False)[1:-1]):
            assert separator.fullmatch(form), repr(form)
    assert not separator.fullmatch("\\x")
    assert not separator.fullmatch("\\u0041")


def test_a_pattern_cut_in_a_multibyte_body_names_byte_offsets() -> None:
    """The body is scanned as text; its spans are offsets into the bytes stored."""
    token = "ghp_" + "a1B2" * 9
    body = f"é\u2003 Bearer\u00a0{'x' * 20} \udcff {token}".encode("utf-8", "surrogatepass")
    result = Redactor().body(body)
    original = body
    assert [original[s["start"]:s["end"]] for s in result.spans] == [
        f"Bearer\u00a0{'x' * 20}".encode(), token.encode()]
    assert result.data == original.replace(f"Bearer\u00a0{'x' * 20}".encode(), b"[REDACTED]"
                                           ).replace(token.encode(), b"[REDACTED]")


def test_a_body_that_is_not_utf8_is_still_scanned() -> None:
    body = b"\xff\xfe AKIAABCDEFGHIJKLMNOP \xc3"
    result = Redactor().body(body)
    assert result.data == b"\xff\xfe [REDACTED] \xc3"
    assert [(s["start"], s["end"]) for s in result.spans] == [(3, 23)]


def test_a_registered_number_is_redacted_as_an_integer_or_a_float() -> None:
    redactor = Redactor(["4929123456781234"])
    assert redactor.value({"n": 4929123456781234, "f": 4929123456781234.0, "b": True,
                           "other": 7}) == {"n": REDACTED, "f": REDACTED + ".0", "b": True,
                                            "other": 7}


_ANCHOR_TEXT = st.lists(st.sampled_from(
    ["gh", "GH", "gH", "p_", "o_", "u_", "s_", "r_", "x_", "ithub_pat_", "g", "h", "sk", "-",
     "SK-", "akia", "AKIA", "bearer", "BeArEr", "in_flight", "é", " ", "a"]),
    max_size=10).map("".join)


@settings(max_examples=800, deadline=None)
@given(_ANCHOR_TEXT)
def test_the_anchor_search_finds_what_a_search_for_each_anchor_finds(text: str) -> None:
    """The anchors sharing a prefix are found through it (one pass, not five); the answer
    stays that of searching each anchor in the lower-cased text."""
    data = text.encode()
    anchors = {a for pattern in DEFAULT_PATTERNS for a in PATTERN_ANCHORS[pattern]}
    assert Redactor()._may_match(data) == any(a in data.lower() for a in anchors)
