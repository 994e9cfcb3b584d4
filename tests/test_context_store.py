"""The host context store and the sandbox-side GatedContext over it (real files, mmap,
a real search subprocess)."""

from __future__ import annotations

import re
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from rlmbox.errors import PolicyDenied
from rlmbox.policies.model import ContextPolicy, DocumentAccess
from rlmbox.runtime import context as context_module
from rlmbox.runtime.context import ContextStore
from rlmbox.sandboxes.agent.gated_context import GatedContext

TEXT = "héllo wörld\nline two\nthird ünïcode line\n" * 3


def gated(store: ContextStore) -> GatedContext:
    """The sandbox object wired straight to the store (the Session puts frames between)."""
    def call(fn: str, *args: Any) -> Any:
        return getattr(store, fn.removeprefix("context."))(*args)
    return GatedContext(call)


def test_text_context_matches_python_str(tmp_path: Path) -> None:
    store = ContextStore(TEXT, tmp_path)
    ctx = gated(store)
    assert store.kind == "text"
    assert store.staged_path.read_text(encoding="utf-8") == TEXT
    assert len(ctx) == len(TEXT)
    for a, b in [(0, 5), (3, 40), (-10, None), (None, 7), (5, 5), (50, 10), (0, 10**9)]:
        assert ctx[a:b] == TEXT[a:b]
    assert ctx[::7] == TEXT[::7]
    assert ctx[20:2:-3] == TEXT[20:2:-3]
    assert ctx[1] == TEXT[1]
    assert ctx[-1] == TEXT[-1]
    with pytest.raises(IndexError):
        ctx[len(TEXT)]
    assert ctx.lines(1, 3) == TEXT.splitlines()[1:3]
    assert ctx.lines(2) == [TEXT.splitlines()[2]]
    assert ctx.lines(0, 10**6) == TEXT.splitlines()
    assert "ünïcode" in ctx
    assert "absent" not in ctx


def test_search_returns_character_offsets(tmp_path: Path) -> None:
    ctx = gated(ContextStore(TEXT, tmp_path))
    hits = ctx.search("w.rld", 10)
    assert hits == [(m.start(), m.end(), m.group()) for m in re.finditer("w.rld", TEXT)]
    assert len(hits) == 3
    assert len(ctx.search("l", 2)) == 2


def test_search_finds_every_match_across_window_edges(tmp_path: Path) -> None:
    """10 MB spans three 4 MiB search windows: no hit is lost or doubled at their edges."""
    text = ("x" * 997 + "NEEDLE") * 10_000
    store = ContextStore(text, tmp_path, ContextPolicy(max_search_hits=20_000))
    hits = store.search("NEEDLE", 20_000)
    assert len(hits) == 10_000
    assert len({s for s, _, _ in hits}) == 10_000
    assert all(text[s:e] == "NEEDLE" for s, e, _ in hits)


@pytest.mark.parametrize("wall_grace_s", [2.0, -0.5], ids=["cpu-limit", "wall-clock"])
def test_catastrophic_search_pattern_is_killed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               wall_grace_s: float) -> None:
    """Whichever limit ends the search first (CPU rlimit or wall clock), the error is the same.

    CI once saw the CPU rlimit win the race against an equal wall-clock timeout and the
    caller got a vaguer message; both orders are now pinned.
    """
    monkeypatch.setattr(context_module, "SEARCH_TIMEOUT_S", 1.0)
    monkeypatch.setattr(context_module, "SEARCH_WALL_GRACE_S", wall_grace_s)
    store = ContextStore("a" * 40 + "!", tmp_path)
    with pytest.raises(ValueError, match="longer than 1 s"):
        store.search("(a+)+$", 1)


def test_per_call_quota(tmp_path: Path) -> None:
    store = ContextStore("a" * 1000, tmp_path, ContextPolicy(max_bytes_per_call=100))
    assert store.read(0, 100) == "a" * 100
    with pytest.raises(PolicyDenied) as info:
        store.read(0, 101)
    assert info.value.rule_ids == ("context.max_bytes_per_call",)
    with pytest.raises(PolicyDenied):
        store.lines(0, 1)          # the single 1000-byte line is over the quota
    assert store.bytes_served == 100


def test_session_quota(tmp_path: Path) -> None:
    store = ContextStore("a" * 1000, tmp_path, ContextPolicy(max_bytes_per_session=250))
    store.read(0, 100)
    store.read(0, 100)
    with pytest.raises(PolicyDenied) as info:
        store.read(0, 100)
    assert info.value.rule_ids == ("context.max_bytes_per_session",)
    assert store.bytes_served == 200


def test_quota_counts_utf8_bytes(tmp_path: Path) -> None:
    store = ContextStore("é" * 100, tmp_path, ContextPolicy(max_bytes_per_call=100))
    assert store.read(0, 50) == "é" * 50
    with pytest.raises(PolicyDenied):
        store.read(0, 51)


def test_audit_mode_reports_but_serves(tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []
    store = ContextStore("a" * 1000, tmp_path, ContextPolicy(max_bytes_per_call=10),
                         enforce=False, on_violation=lambda q, m: seen.append((q, m)))
    assert store.read(0, 20) == "a" * 20
    assert seen[0][0] == "context.max_bytes_per_call"


def test_documents_allow_and_deny(tmp_path: Path) -> None:
    policy = ContextPolicy(documents=DocumentAccess(allow=("*",), deny=("secret*",)))
    docs = {"a": "alpha text", "b": "beta text", "secret-1": "the password", "n": {"k": 1}}
    store = ContextStore(docs, tmp_path, policy)
    ctx = gated(store)
    assert store.kind == "json"
    assert store.staged_path.name == "context.json"
    assert [d["id"] for d in ctx.documents()] == ["a", "b", "n"]
    assert ctx["b"] == "beta text"
    assert ctx["n"] == '{"k": 1}'
    with pytest.raises(PolicyDenied, match="denied"):
        ctx["secret-1"]
    assert ctx[0:len(ctx)] == 'alpha text\nbeta text\n{"k": 1}'   # the view: no secret
    assert [t for _, _, t in ctx.search("[a-z]+word", 10)] == []
    assert [t for _, _, t in ctx.search("t[a-z]+", 10)] == ["text", "ta", "text"]
    with pytest.raises(KeyError):
        ctx["nope"]


def test_audit_mode_serves_a_denied_document_and_reports_it(tmp_path: Path) -> None:
    """``mode: audit`` decides and logs but does not block: the view holds every document."""
    seen: list[tuple[str, str]] = []
    policy = ContextPolicy(documents=DocumentAccess(allow=("*",), deny=("secret*",)))
    store = ContextStore({"a": "alpha", "secret": "hidden"}, tmp_path, policy,
                         enforce=False, on_violation=lambda q, m: seen.append((q, m)))
    assert store.read(0, store.len()) == "alpha\nhidden"
    assert [t for _, _, t in store.search("hid+en", 5)] == ["hidden"]
    assert store.document("secret") == "hidden"
    assert [q for q, _ in seen] == ["context.documents"] * 3


def test_list_context_documents_are_numbered(tmp_path: Path) -> None:
    ctx = gated(ContextStore(["first", "second"], tmp_path))
    assert [d["id"] for d in ctx.documents()] == ["0", "1"]
    assert ctx["1"] == "second"


def test_search_hits_quota(tmp_path: Path) -> None:
    store = ContextStore("a" * 100, tmp_path, ContextPolicy(max_search_hits=5))
    with pytest.raises(PolicyDenied, match="max_hits 6"):
        store.search("a", 6)


@pytest.mark.parametrize(("args", "error"), [
    ((-1, 5), ValueError), ((True, 5), TypeError), (("0", 5), TypeError), ((0.5, 2), TypeError),
])
def test_hostile_read_arguments(tmp_path: Path, args: tuple[Any, Any],
                                error: type[Exception]) -> None:
    store = ContextStore("abc", tmp_path)
    with pytest.raises(error):
        store.read(*args)


def test_invalid_utf8_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(b"ok\xff\xfe")
    with pytest.raises(ValueError, match="not UTF-8 at byte 2"):
        ContextStore(path, tmp_path / "s")


def test_empty_context(tmp_path: Path) -> None:
    ctx = gated(ContextStore("", tmp_path))
    assert len(ctx) == 0
    assert ctx[0:10] == ""
    assert ctx.search("x", 3) == []


@pytest.mark.slow
def test_one_gigabyte_context_without_loading_it(tmp_path: Path) -> None:
    """A 1 GiB file is indexed, sliced, line-read and searched; the host's Python heap
    peaks far below the file size (it is memory-mapped, never one Python str)."""
    path = tmp_path / "big.txt"
    line = ("lorem ipsum dolor sit amet é " * 3)[:-1] + "\n"
    block = (line * ((4 * 1024 * 1024) // len(line.encode()))).encode()
    with path.open("wb") as handle:
        while handle.tell() < 1024**3:
            handle.write(block)
        handle.write(b"THE END\n")
    tracemalloc.start()
    store = ContextStore(path, tmp_path / "stage",
                         ContextPolicy(max_bytes_per_session=10 * 1024**3))
    n = store.len()
    assert n > 1000**3
    assert store.read(n - 8, n) == "THE END\n"
    assert store.read(0, len(line)) == line
    assert store.lines(1000, 1001) == [line.rstrip("\n")]
    hits = store.search("THE END", 1)
    assert hits[0][:2] == [n - 8, n - 1]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 32 * 1024 * 1024   # Python allocations peak far below the 1 GiB file
    store.close()
