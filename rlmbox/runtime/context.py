"""The host context store: the task's long input as a file, memory-mapped, quota-gated.

A context given as a ``str`` is staged as a UTF-8 text file, a ``dict`` or ``list`` as a
JSON file (what ``context: variable`` loads inside the sandbox), and a ``Path`` is used in
place. For ``context: gated`` every read goes through the methods here, which the Session
registers as the host functions ``context.len``, ``context.read``, ``context.search``,
``context.lines``, ``context.documents`` and ``context.document``. Each applies the
policy's quotas (bytes per call, bytes per session, per-document allow/deny) before any
byte is returned.

Multi-document contexts (a dict of id -> text, or a list of texts with ids "0", "1", ...)
are laid out as one text, the *view*: the documents the policy permits, in order,
separated by a newline. Every operation (len, read, lines, search, documents) runs over
the view, so a denied document's text is not in what a regex runs over at all: no match
can run into it and no lookahead can test it. Offsets are view offsets. In ``audit`` mode
the view holds every document and an access touching a denied one is reported, not refused.
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from rlmbox.errors import PolicyDenied
from rlmbox.policies.model import ContextPolicy
from rlmbox.runtime.context_text import TextFile
from rlmbox.sandboxes.base import ResourceLimits
from rlmbox.sandboxes.process.oneshot import JailedRun, JailGroup, run_jailed

MAX_PATTERN_CHARS = 1000
MAX_LINES_PER_CALL = 100_000
SEARCH_TIMEOUT_S = 10.0
# The CPU rlimit ends a backtracking search; the wall clock, a little later, ends one that
# is starved of CPU on a loaded host. Both are cut to what the cell and session have left.
SEARCH_WALL_GRACE_S = 2.0
SEARCH_MATCH_CHARS = 1000
_SEARCHER = "context_search.py"   # in the agent bundle: stdlib and confine.py only

Violation = Callable[[str, str], None]   # (quota id, message): for audit in audit mode


@dataclass(frozen=True)
class Document:
    id: str
    start: int   # character offsets in the laid-out text
    end: int


def _document_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _write_atomic(directory: Path, name: str, write: Callable[[Any], None]) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=directory)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
        write(handle)
    os.chmod(tmp, 0o644)  # the sandbox runs as another uid and must read it
    target = directory / name
    os.replace(tmp, target)
    return target


class ContextStore:
    """One session's context. Thread-safe; close it when the session ends."""

    def __init__(self, source: str | Mapping[str, Any] | Sequence[Any] | Path,
                 directory: Path, policy: ContextPolicy | None = None, *,
                 enforce: bool = True, on_violation: Violation | None = None,
                 limits: ResourceLimits | None = None) -> None:
        self.policy = policy or ContextPolicy()
        self.limits = limits or ResourceLimits()   # the session's: the searcher's jail
        self.search_cpu_seconds = 0.0   # what searches used, against limits.cpu_seconds
        self._enforce = enforce
        self._on_violation = on_violation
        self._lock = threading.Lock()
        self._searches = JailGroup()   # killed at close: no search outlives the session
        self._directory = directory    # ours: removed at close, with what we wrote in it
        self.bytes_served = 0
        directory.mkdir(parents=True, exist_ok=True)
        self.documents_table: tuple[Document, ...] = ()
        self.kind: Literal["text", "json"]
        if isinstance(source, Path):
            self.kind, self.staged_path = "text", source
        elif isinstance(source, str):
            self.kind = "text"
            self.staged_path = _write_atomic(directory, "context.txt", lambda h: h.write(source))
        elif isinstance(source, Mapping | list | tuple):
            self.kind = "json"
            self.staged_path = _write_atomic(
                directory, "context.json",
                lambda h: json.dump(source, h, ensure_ascii=False))
            items = (list(source.items()) if isinstance(source, Mapping)
                     else [(str(i), v) for i, v in enumerate(source)])
            self.text = TextFile(self._layout(directory, [(str(k), v) for k, v in items]))
            return
        else:
            raise TypeError(f"a context is a str, dict, list or Path, "
                            f"not {type(source).__name__}")
        if self._visible("0"):   # one text document, "0": the view is the file itself
            self.text = TextFile(self.staged_path)
            self.documents_table = (Document("0", 0, self.text.chars),)
        else:
            self.text = TextFile(self._layout(directory, []))

    def _visible(self, doc_id: str) -> bool:
        """In the view: permitted, or any document when the policy only audits."""
        return not self._enforce or self._doc_allowed(doc_id)

    def _layout(self, directory: Path, items: list[tuple[str, Any]]) -> Path:
        """Writes the view: the visible documents only, newline-separated."""
        table: list[Document] = []
        position = 0
        visible = [(doc_id, value) for doc_id, value in items if self._visible(doc_id)]

        def write(handle: Any) -> None:
            nonlocal position
            for index, (doc_id, value) in enumerate(visible):
                if index:
                    handle.write("\n")
                    position += 1
                text = _document_text(value)
                handle.write(text)
                table.append(Document(doc_id, position, position + len(text)))
                position += len(text)

        path = _write_atomic(directory, "context.view.txt", write)
        self.documents_table = tuple(table)
        return path

    def close(self) -> None:
        """Kills any search still running and removes the files written for this
        session: its directory, with the whole context (denied documents included) and
        the view. A context given as a ``Path`` lives elsewhere; it is the caller's and
        stays."""
        self._searches.kill_all()
        self.text.close()
        shutil.rmtree(self._directory, ignore_errors=True)

    # --- quotas -------------------------------------------------------------------

    def _doc_allowed(self, doc_id: str) -> bool:
        access = self.policy.documents
        if any(fnmatch.fnmatchcase(doc_id, p) for p in access.deny):
            return False
        return any(fnmatch.fnmatchcase(doc_id, p) for p in access.allow)

    def _refuse(self, quota: str, message: str) -> None:
        if self._on_violation is not None:
            self._on_violation(quota, message)
        if self._enforce:
            raise PolicyDenied(message, rule_ids=(quota,))

    def _check_range(self, start: int, end: int) -> None:
        """Refuses (audit mode: reports) a range touching a denied document; under
        ``enforce`` the view holds none, so this only speaks in audit mode."""
        for doc in self.documents_table:
            if doc.start < end and start < doc.end and not self._doc_allowed(doc.id):
                self._refuse("context.documents",
                             f"context range {start}:{end} touches document {doc.id!r}, "
                             "which the policy denies")

    def _charge(self, size: int) -> None:
        """Counts ``size`` bytes against the quotas, or refuses before anything is read."""
        limit = self.policy.max_bytes_per_call
        if size > limit:
            self._refuse("context.max_bytes_per_call",
                         f"context read of {size} bytes is over the {limit} bytes per call "
                         "quota; read a smaller range")
        with self._lock:
            total = self.policy.max_bytes_per_session
            if self.bytes_served + size > total:
                self._refuse("context.max_bytes_per_session",
                             f"context reads would total {self.bytes_served + size} bytes, "
                             f"over the {total} bytes per session quota")
            self.bytes_served += size

    # --- the host functions -------------------------------------------------------

    def len(self) -> int:
        """Characters in the whole context."""
        return self.text.chars

    def read(self, start: int, end: int) -> str:
        """Characters ``start:end`` (non-negative, clamped to the length)."""
        start, end = _span(start, end, self.text.chars)
        self._check_range(start, end)
        first, last = self.text.byte_at(start), self.text.byte_at(end)
        self._charge(last - first)
        return self.text.decode(first, last)

    def lines(self, start: int, end: int) -> list[str]:
        """Lines ``start:end`` (0-based, end exclusive), without their newlines."""
        count = self.text.newlines + (1 if self.text.line_start(self.text.newlines)
                                      < self.text.size else 0)
        start, end = _span(start, end, count)
        if end - start > MAX_LINES_PER_CALL:
            self._refuse("context.max_lines_per_call",
                         f"at most {MAX_LINES_PER_CALL} lines a call")
        first = self.text.line_start(start)
        last, cap = first, self.policy.max_bytes_per_call
        for _ in range(end - start):   # stops early once over quota: no huge scan
            last = self.text.next_line_end(last)
            if last - first > cap:
                break
        self._check_range(self.text.char_at(first), self.text.char_at(last))
        self._charge(last - first)
        return self.text.decode(first, last).splitlines()

    def search(self, pattern: str, max_hits: int = 10, *,
               deadline: float | None = None) -> list[list[Any]]:
        """Regex hits over the view as ``[start, end, text]`` (text capped). The search
        ends by ``deadline`` (``time.monotonic()``; the cell's) and its CPU counts against
        the session's ``cpu_seconds``."""
        if not isinstance(pattern, str) or not pattern or len(pattern) > MAX_PATTERN_CHARS:
            raise ValueError(f"pattern must be a non-empty str of at most "
                             f"{MAX_PATTERN_CHARS} characters")
        if not isinstance(max_hits, int) or isinstance(max_hits, bool) or max_hits < 1:
            raise ValueError("max_hits must be a positive int")
        if max_hits > self.policy.max_search_hits:
            self._refuse("context.max_search_hits",
                         f"max_hits {max_hits} is over the policy's "
                         f"{self.policy.max_search_hits}")
            max_hits = self.policy.max_search_hits
        hits = self._jailed_search(pattern, max_hits, deadline)
        for start, end, _ in hits:
            self._check_range(start, end)
        self._charge(sum(len(h[2].encode("utf-8")) for h in hits))
        return hits

    def _jailed_search(self, pattern: str, max_hits: int,
                       deadline: float | None) -> list[list[Any]]:
        """Runs the searcher in its jail over an inherited descriptor of the view; its
        CPU is charged whether it answers or is killed."""
        left = math.inf if deadline is None else deadline - time.monotonic()
        if left <= 0:
            raise ValueError("the cell's time is up; the search was not started")
        with self._lock:
            cpu_left = self.limits.cpu_seconds - self.search_cpu_seconds
        if cpu_left < 1:   # RLIMIT_CPU counts whole seconds
            raise PolicyDenied(f"searches used the session's {self.limits.cpu_seconds} CPU "
                               "seconds", rule_ids=("limits.cpu_seconds",))
        stated = min(SEARCH_TIMEOUT_S, left)
        cpu = max(1, min(math.ceil(stated), int(cpu_left)))
        fd = os.open(self.text.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            request = {"fd": fd, "pattern": pattern, "max_hits": max_hits,
                       "max_match_chars": SEARCH_MATCH_CHARS}
            run = run_jailed(_SEARCHER, json.dumps(request).encode(), input_fd=fd,
                             limits=replace(self.limits, cpu_seconds=cpu),
                             timeout=min(SEARCH_TIMEOUT_S + SEARCH_WALL_GRACE_S, left),
                             group=self._searches)
        finally:
            os.close(fd)
        with self._lock:
            self.search_cpu_seconds += run.cpu_seconds
        return _hits(run, stated)

    def documents(self) -> list[dict[str, Any]]:
        """The documents the policy allows: id, start, end (character offsets)."""
        return [{"id": d.id, "start": d.start, "end": d.end}
                for d in self.documents_table if self._doc_allowed(d.id)]

    def document(self, doc_id: str) -> str:
        """The full text of one allowed document. A denied id is refused whether or not
        such a document exists, so the refusal says nothing about what is there."""
        if not self._doc_allowed(doc_id):
            self._refuse("context.documents", f"document {doc_id!r} is denied by the policy")
        for doc in self.documents_table:
            if doc.id == doc_id:
                first, last = self.text.byte_at(doc.start), self.text.byte_at(doc.end)
                self._charge(last - first)
                return self.text.decode(first, last)
        raise KeyError(f"no document {doc_id!r}")


def _span(start: Any, end: Any, length: int) -> tuple[int, int]:
    for value in (start, end):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError("start and end must be int")
    if start < 0 or end < 0:
        raise ValueError("start and end must not be negative")
    start, end = min(start, length), min(end, length)
    return start, max(start, end)


# killed by the CPU rlimit (SIGKILL at the hard limit), directly or as bubblewrap reports it
_KILLED = frozenset({-signal.SIGKILL, -signal.SIGXCPU,
                     128 + signal.SIGKILL, 128 + signal.SIGXCPU})


def _hits(run: JailedRun, stated_s: float) -> list[list[Any]]:
    """The searcher's answer, or why there is none. The CPU rlimit and the wall clock race
    for a backtracking pattern; either way the caller learns the same thing."""
    if run.timed_out or run.returncode in _KILLED:
        raise ValueError(f"search took longer than {stated_s:g} s; simplify the pattern")
    if run.returncode != 0:
        raise ValueError("search failed (pattern too costly or invalid)")
    result = json.loads(run.stdout)
    if "error" in result:
        raise ValueError(str(result["error"]))
    hits: list[list[Any]] = result["hits"]
    return hits
