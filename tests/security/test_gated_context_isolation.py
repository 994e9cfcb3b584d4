"""Attacks on the gated context's document policy: a denied document must be invisible.

Model code controls the regex given to ``context.search`` and every offset given to
``context.read``/``context.lines``. A denied document must not be in what any of them
runs over: no hit may start before it and run into it, and no zero-width lookahead may
test its characters. The host store is driven directly (the Session only puts frames
between), plus one run through a real sandbox on each backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlmbox.errors import PolicyDenied
from rlmbox.policies.model import ContextPolicy, DocumentAccess
from rlmbox.runtime.context import ContextStore

from .harness import Runtimes

DENIED_TEXT = "TOPSECRET-zq7-password-hunter2"
DENY_SECRET = ContextPolicy(mode="gated",
                            documents=DocumentAccess(allow=("*",), deny=("secret*",)))


def _store(tmp_path: Path, docs: dict[str, Any],
           policy: ContextPolicy = DENY_SECRET) -> ContextStore:
    return ContextStore(docs, tmp_path, policy)


def _docs(secret: str) -> dict[str, Any]:
    return {"a": "alpha allowed text", "secret-1": secret, "b": "beta allowed text"}


def test_a_match_starting_in_an_allowed_document_does_not_run_into_a_denied_one(
        tmp_path: Path) -> None:
    store = _store(tmp_path, _docs(DENIED_TEXT))
    try:
        for pattern in (r"\n[\s\S]{1,999}", r"[\s\S]{1,999}", r"t[\s\S]+", r"(?s).*"):
            hits = store.search(pattern, 5)
            assert hits, pattern   # the allowed text is there to match
            for _, _, text in hits:
                assert "TOPSECRET" not in text, (pattern, text)
                assert "hunter2" not in text, (pattern, text)
    finally:
        store.close()


def test_the_searched_text_holds_no_byte_of_a_denied_document(tmp_path: Path) -> None:
    """Not filtered after matching: the denied text is not in what the regex runs over."""
    store = _store(tmp_path, _docs(DENIED_TEXT))
    try:
        assert DENIED_TEXT.encode() not in store.text.path.read_bytes()
        whole = store.read(0, store.len())
        assert whole == "alpha allowed text\nbeta allowed text"
    finally:
        store.close()


def test_a_denied_id_is_refused_the_same_whether_or_not_it_exists(tmp_path: Path) -> None:
    store = _store(tmp_path, _docs(DENIED_TEXT))
    try:
        messages = []
        for doc_id in ("secret-1", "secret-does-not-exist"):
            with pytest.raises(PolicyDenied) as info:
                store.document(doc_id)
            messages.append(str(info.value).replace(doc_id, "ID"))
        assert messages[0] == messages[1]
    finally:
        store.close()


_ORACLE_PATTERNS = (
    *(rf"\n(?=[\s\S]{{{n}}}[a-m])" for n in (0, 1, 5, 20)),
    r"(?=[\s\S]*[a-m]{3})", r"[\s\S]{1,999}", r"\n", r"(?s).+$",
)


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.text(alphabet="abcmnxyz\n", min_size=0, max_size=40),
       second=st.text(alphabet="abcmnxyz\n", min_size=0, max_size=40))
def test_a_lookahead_oracle_learns_nothing_about_a_denied_document(
        tmp_path_factory: pytest.TempPathFactory, first: str, second: str) -> None:
    """Whatever the denied text is, every context operation answers the same."""
    answers = []
    for secret in (first, second):
        store = _store(tmp_path_factory.mktemp("ctx"), _docs(secret))
        try:
            answers.append((
                store.len(), store.documents(), store.read(0, store.len()),
                store.lines(0, 10), [store.search(p, 20) for p in _ORACLE_PATTERNS]))
        finally:
            store.close()
    assert answers[0] == answers[1]


def test_a_denied_document_is_invisible_inside_a_real_sandbox(
        backend: str, runtimes: Runtimes) -> None:
    rt = runtimes(context={"mode": "gated",
                           "documents": {"allow": ["*"], "deny": ["secret*"]}},
                  rules=[{"id": "ctx", "effect": "permit", "function": "context.*"}],
                  # four searches, each a jail start: a loaded 2-core host took over 3 s
                  limits={"cell_timeout_s": 30})
    with rt.session(context=_docs(DENIED_TEXT)) as session:
        result = session.exec(
            "seen = [t for _, _, t in context.search(r'\\n[\\s\\S]{1,999}', 5)]\n"
            "probe = [bool(context.search(rf'\\n(?=[\\s\\S]{{{n}}}T)', 1)) for n in (0, 5, 10)]\n"
            "print(repr(seen), len(context), any(probe))")
    assert result.status == "ok", result.error
    assert "TOPSECRET" not in result.stdout
    assert result.stdout.strip().endswith(f"{len('alpha allowed text') + 1 + 17} False")
