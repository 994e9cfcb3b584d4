"""Sandbox-chosen text in an audit record: a short attribute to read, the whole a body.

An attribute is cut to a few hundred characters so sandbox text cannot bloat a record; the
whole text goes to a body of the same name, which the log digests and redacts with
evidence (the original's digest and the spans cut). The attribute is redacted *before* it
is cut: a cut through the middle of a secret leaves a prefix that neither the secret's
value nor a credential pattern matches any more, and the log would write most of it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

#: The most of one text a record holds as an attribute (``error``, ``reason``, ...).
ATTRIBUTE_CHARS = 1024


def text_fields(name: str, text: str, redact: Callable[[str], str],
                bodies: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The record's ``name`` attribute (redacted, then capped) and ``bodies`` with the
    whole ``text`` as body ``name``; pass the result as keyword arguments of an event."""
    shown = redact(text)
    if len(shown) > ATTRIBUTE_CHARS:
        shown = (f"{shown[:ATTRIBUTE_CHARS]}... [{len(shown) - ATTRIBUTE_CHARS} more "
                 f"characters in body {name}]")
    return {name: shown, "bodies": {**(bodies or {}), name: text}}
