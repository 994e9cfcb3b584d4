"""Secret redaction: exact configured values plus patterns for well-known credential shapes.

Runs before anything is digested or written, over every string of an event (keys included)
and over body bytes, so a redacted value reaches neither the log nor the body store.

The two kinds differ in what they may erase. A configured secret is the host's own and is
removed without trace. A pattern match is only a guess, and over a body the sandbox
controls (its stdout, say) it would let model code hide data from the log by making it
look like a key; so :meth:`Redactor.body` also returns the evidence: the digest of the
body before the patterns ran and the byte spans they cut, each with its reason.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rlmbox.audit.fast_canonical import fast_canonical_bytes
from rlmbox.errors import AuditRecordInvalid

REDACTED = "[REDACTED]"

#: What may separate ``Bearer`` from its token: any whitespace ``\s`` takes (Unicode), or
#: its JSON escape, as it stands in a body that is a JSON text (``args``, ``answer``): the
#: short escapes and ``\uXXXX`` for each whitespace code point (``tests/audit/test_redact.py``
#: checks the list against ``str.isspace``).
BEARER_SEPARATOR = (r"(?:\s|\\[tnrf]|\\u(?i:000[9a-d]|001[c-f]|0020|0085|00a0|1680"
                    r"|200[0-9a]|202[89f]|205f|3000))+")

#: Credential shapes redacted even when nobody configured the value.
DEFAULT_PATTERNS: tuple[str, ...] = (
    r"sk-ant-[A-Za-z0-9_\-]{16,}",                         # Anthropic API keys
    r"sk-[A-Za-z0-9_\-]{20,}",                             # OpenAI-style API keys
    rf"(?i:bearer){BEARER_SEPARATOR}[A-Za-z0-9._~+/\-]{{16,}}=*",   # HTTP bearer tokens
    r"AKIA[0-9A-Z]{16}",                                   # AWS access key ids
    r"gh[pousr]_[A-Za-z0-9]{36,}",                         # GitHub tokens (classic)
    r"github_pat_[A-Za-z0-9_]{22,}",                       # GitHub fine-grained tokens
)


#: For each default pattern, texts one of which every match contains, compared after ASCII
#: lower-casing (``(?i:bearer)`` matches no letter outside ASCII). A text holding none of the
#: anchors cannot match, so the regular-expression scan, the costly part of redacting, is
#: skipped (``tests/audit/test_redact.py`` checks the anchors against matches). Each anchor
#: costs a pass over the text (a ``find``, well under a microsecond for a record; anchors
#: sharing their first two bytes share one pass, see ``_anchor_searches``), a false hit the
#: whole scan (14 us for a host-call record): so the GitHub pattern has its five prefixes,
#: not ``gh``, which every host-call record's budget holds in "in_flight".
PATTERN_ANCHORS: dict[str, tuple[bytes, ...]] = {
    DEFAULT_PATTERNS[0]: (b"sk-",),
    DEFAULT_PATTERNS[1]: (b"sk-",),
    DEFAULT_PATTERNS[2]: (b"bearer",),
    DEFAULT_PATTERNS[3]: (b"akia",),
    DEFAULT_PATTERNS[4]: (b"ghp_", b"gho_", b"ghu_", b"ghs_", b"ghr_"),
    DEFAULT_PATTERNS[5]: (b"github_pat_",),
}


#: Why a pattern-only span was cut, as the record states it.
PATTERN_REASON = "credential pattern"


@dataclass(frozen=True)
class RedactedBody:
    """A body after redaction, and the evidence a pattern-only cut leaves behind.

    ``original_sha256`` (the digest of the body after the configured secrets were removed,
    before any pattern ran) and ``spans`` (byte offsets in that body) are set only when a
    pattern cut something.
    """

    data: bytes
    original_sha256: str | None = None
    spans: tuple[dict[str, Any], ...] = ()


class Redactor:
    """Replaces secrets with ``[REDACTED]``; ``add`` is safe from any thread."""

    def __init__(self, secrets: Iterable[str] = (),
                 patterns: Iterable[str] = DEFAULT_PATTERNS) -> None:
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()
        self._secret_bytes: tuple[bytes, ...] = ()
        for secret in secrets:
            self.add(secret)
        patterns = tuple(patterns)
        joined = "|".join(f"(?:{p})" for p in patterns)
        # Anchors only when every pattern has them; otherwise every text is scanned.
        self._anchors: tuple[tuple[bytes, tuple[bytes, ...]], ...] | None = (
            _anchor_searches(a for p in patterns for a in PATTERN_ANCHORS[p])
            if all(p in PATTERN_ANCHORS for p in patterns) else None)
        self._pattern = re.compile(joined) if joined else None
        # A default pattern matches inside a string as it does inside the record's JSON line;
        # a configured one may not (``^pin$`` never matches a line), so with one configured
        # ``may_change`` leaves every record to the full walk.
        self._line_safe = all(p in PATTERN_ANCHORS for p in patterns)

    def add(self, secret: str) -> None:
        """Redact ``secret`` from every later event; an empty value is refused."""
        if not isinstance(secret, str) or not secret:
            raise ValueError("a secret to redact must be a non-empty string")
        # Bodies that are JSON texts (``args``, ``answer``) hold a value with a quote,
        # backslash or control character escaped, as json.dumps writes it (either way).
        forms = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
        with self._lock:
            # Longest first, so a secret containing another is replaced whole.
            merged = sorted({*self._secrets, *forms}, key=len, reverse=True)
            self._secrets = tuple(merged)
            self._secret_bytes = tuple(s.encode("utf-8", "surrogatepass") for s in merged)

    def text(self, value: str) -> str:
        """``value`` with every secret and pattern match replaced."""
        if type(value) is not str:   # a subclass's own ``in`` or ``replace`` is not asked
            value = str.__str__(value)
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        if self._pattern is not None:
            value = self._pattern.sub(REDACTED, value)
        return value

    def body(self, value: str | bytes) -> RedactedBody:
        """A body with configured secrets removed and pattern matches cut, with evidence."""
        data = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else bytes(value)
        marker = REDACTED.encode()
        for secret in self._secret_bytes:
            if secret in data:
                data = data.replace(secret, marker)
        if self._pattern is None or not self._may_match(data):
            return RedactedBody(data)
        spans = _pattern_spans(self._pattern, data)
        if not spans:
            return RedactedBody(data)
        pieces: list[bytes] = []
        cut = 0
        for span in spans:
            pieces += (data[cut:span["start"]], marker)
            cut = span["end"]
        pieces.append(data[cut:])
        return RedactedBody(b"".join(pieces), hashlib.sha256(data).hexdigest(), spans)

    def needs(self, event: dict[str, Any]) -> bool:
        """Cheap pre-check: False only if no string in ``event`` can contain a secret.

        Serialises once, as the log writes it (a float as ``str`` spells it, where ``value``
        looks for a numeric secret: orjson alone writes ``1e-05`` as ``0.00001``), and asks
        ``may_change`` of the bytes; if the event does not serialise, we say True and let
        the full walk decide.
        """
        try:
            data = fast_canonical_bytes(event)
        except AuditRecordInvalid:   # not JSON-able: the walk decides, canonicalize refuses
            return True
        return self.may_change(data)

    def may_change(self, data: bytes) -> bool:
        """False only if ``value`` would change nothing in the event ``data`` serialises.

        ``data`` is the event as JSON; the canonical line writes a float as ``str`` does,
        where ``value`` looks for a numeric secret. Searches with ``find``: ``in`` on bytes
        first tries the operand as an integer and raises and clears a TypeError, which
        costs more than searching 400 bytes. JSON escapes only quotes, backslashes and
        control characters, so a text without any backslash holds every string (and key)
        verbatim, and a miss there is a miss in every string.
        """
        if data.find(b"\\") != -1 or not self._line_safe:
            return True
        for secret in self._secret_bytes:   # a loop: any() with a generator costs more
            if data.find(secret) != -1:
                return True
        # The text pattern, as ``text`` uses it: its ``\\s`` takes Unicode spaces too.
        return (self._pattern is not None and self._may_match(data)
                and self._pattern.search(data.decode("utf-8")) is not None)

    def _may_match(self, data: bytes) -> bool:
        """False only if no pattern can match ``data`` (none of their anchors is in it)."""
        if self._anchors is None:
            return True
        lowered = data.lower()
        for needle, confirm in self._anchors:
            at = lowered.find(needle)
            if not confirm:
                if at != -1:
                    return True
                continue
            while at != -1:
                if lowered.startswith(confirm, at):
                    return True
                at = lowered.find(needle, at + 1)
        return False

    def value(self, value: Any) -> Any:
        """Redact recursively through dicts (keys and values), lists, tuples and numbers."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(k) if isinstance(k, str) else k: self.value(v)
                    for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        if isinstance(value, int | float) and not isinstance(value, bool):
            # A registered all-digit secret (a card or account number) may come as a number,
            # spelled as JSON writes it (an int-mixin Enum's str() is its name, not digits).
            try:
                digits = (int.__repr__ if isinstance(value, int) else float.__repr__)(value)
            except ValueError as exc:   # more digits than int -> str may write
                raise AuditRecordInvalid(f"a number too large to record: {exc}") from exc
            if any(secret in digits for secret in self._secrets):
                return self.text(digits)
        return value


def _anchor_searches(anchors: Iterable[bytes]) -> tuple[tuple[bytes, tuple[bytes, ...]], ...]:
    """What ``_may_match`` searches: ``(anchor, ())`` for an anchor alone on its first two
    bytes, ``(those two bytes, the anchors)`` for several sharing them, to confirm at each
    hit. A search is a pass over the record (about 0.35 us for a host call here), so the
    five GitHub prefixes ``ghp_ gho_ ...`` cost one pass, not five."""
    by_prefix: dict[bytes, list[bytes]] = {}
    for anchor in dict.fromkeys(anchors):
        by_prefix.setdefault(anchor[:2], []).append(anchor)
    return tuple((group[0], ()) if len(group) == 1 else (prefix, tuple(group))
                 for prefix, group in by_prefix.items())


def _pattern_spans(pattern: re.Pattern[str], data: bytes) -> tuple[dict[str, Any], ...]:
    """The byte spans the text pattern matches in ``data``, as it would in an attribute.

    Scanned as text, not bytes, so that ``\\s`` takes the same (Unicode) spaces in a
    body as in an attribute; ``surrogateescape`` makes any bytes a text whose characters
    each encode back to their own bytes, so character offsets map to byte offsets.
    """
    text = data.decode("utf-8", "surrogateescape")
    if len(text) == len(data):   # each character one byte: its offsets are byte offsets
        return tuple({"start": m.start(), "end": m.end(), "reason": PATTERN_REASON}
                     for m in pattern.finditer(text))
    spans: list[dict[str, Any]] = []
    char = byte = 0
    for match in pattern.finditer(text):
        start = byte + len(text[char:match.start()].encode("utf-8", "surrogateescape"))
        byte = start + len(match.group().encode("utf-8", "surrogateescape"))
        char = match.end()
        spans.append({"start": start, "end": byte, "reason": PATTERN_REASON})
    return tuple(spans)
