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

REDACTED = "[REDACTED]"

#: Credential shapes redacted even when nobody configured the value.
DEFAULT_PATTERNS: tuple[str, ...] = (
    r"sk-ant-[A-Za-z0-9_\-]{16,}",                   # Anthropic API keys
    r"sk-[A-Za-z0-9_\-]{20,}",                       # OpenAI-style API keys
    r"(?i:bearer)\s+[A-Za-z0-9._~+/\-]{16,}=*",      # HTTP bearer tokens
    r"AKIA[0-9A-Z]{16}",                             # AWS access key ids
    r"gh[pousr]_[A-Za-z0-9]{36,}",                   # GitHub tokens
)


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
        joined = "|".join(f"(?:{p})" for p in patterns)
        self._pattern = re.compile(joined) if joined else None
        self._pattern_bytes = re.compile(joined.encode()) if joined else None

    def add(self, secret: str) -> None:
        """Redact ``secret`` from every later event; an empty value is refused."""
        if not isinstance(secret, str) or not secret:
            raise ValueError("a secret to redact must be a non-empty string")
        with self._lock:
            # Longest first, so a secret containing another is replaced whole.
            merged = sorted({*self._secrets, secret}, key=len, reverse=True)
            self._secrets = tuple(merged)
            self._secret_bytes = tuple(s.encode("utf-8", "surrogatepass") for s in merged)

    def text(self, value: str) -> str:
        """``value`` with every secret and pattern match replaced."""
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
        if self._pattern_bytes is None:
            return RedactedBody(data)
        spans = tuple({"start": m.start(), "end": m.end(), "reason": PATTERN_REASON}
                      for m in self._pattern_bytes.finditer(data))
        if not spans:
            return RedactedBody(data)
        return RedactedBody(self._pattern_bytes.sub(marker, data),
                            hashlib.sha256(data).hexdigest(), spans)

    def needs(self, event: dict[str, Any]) -> bool:
        """Cheap pre-check: False only if no string in ``event`` can contain a secret.

        Serialises once (C speed) and searches the text. JSON escapes only quotes,
        backslashes and control characters, so a text without any backslash holds every
        string verbatim and a miss there is a miss in every string; otherwise, or if the
        event does not serialise, we say True and let the full walk decide.
        """
        try:
            text = json.dumps(event, ensure_ascii=False, check_circular=False)
        except (TypeError, ValueError, RecursionError):
            return True
        if "\\" in text:
            return True
        if any(secret in text for secret in self._secrets):
            return True
        return self._pattern is not None and self._pattern.search(text) is not None

    def value(self, value: Any) -> Any:
        """Redact recursively through dicts (keys and values), lists and tuples."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(k) if isinstance(k, str) else k: self.value(v)
                    for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value
