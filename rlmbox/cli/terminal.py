"""Text from the audit log made safe for the operator's terminal.

Bodies and attributes hold what the sandbox sent; printed raw, an escape sequence in a
cell's stdout could retitle, clear or rewrite the operator's terminal, or hide lines. Every
control and format character (C0, DEL, C1, bidirectional overrides) is shown as an escape.
"""

from __future__ import annotations

import unicodedata

_KEEP = frozenset("\t")


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal_safe(text: str) -> str:
    """``text`` with every control and format character but tab written as ``\\xNN``."""
    return "".join(_escape(c) if c not in _KEEP and unicodedata.category(c) in ("Cc", "Cf")
                   else c for c in text)
