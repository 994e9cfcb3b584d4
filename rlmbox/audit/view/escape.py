"""Text from the log into HTML: escaped, with invisible characters made visible.

Everything a sandbox produced (code, output, errors, answers, arguments) and every field a
tampered log could carry goes through here. ``html.escape`` stops markup; the control and
bidirectional characters are shown as escapes too, so an output cannot hide or reorder what
the reader sees (a right-to-left override, a carriage return, a terminal escape).
"""

from __future__ import annotations

import html
from functools import cache

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

_INVISIBLE = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F) if code not in (9, 10)}
_INVISIBLE.update({code: f"\\u{code:04x}" for code in (
    *range(0x80, 0xA0), 0x200B, 0x200C, 0x200D, 0x200E, 0x200F, *range(0x202A, 0x202F),
    *range(0x2066, 0x206A), 0xFEFF)})
_VISIBLE = str.maketrans(_INVISIBLE)

#: The class every highlighted block carries; the page's stylesheet scopes pygments to it.
CODE_CLASS = "code"


def visible(text: str) -> str:
    """``text`` with control and bidirectional characters replaced by their escapes."""
    return text.translate(_VISIBLE)


def esc(value: object) -> str:
    """Any value as HTML text (attribute-safe: quotes are escaped too)."""
    return html.escape(visible(str(value)), quote=True)


def python_html(code: str) -> str:
    """``code`` highlighted as Python: spans with classes, every character escaped."""
    return str(highlight(visible(code), _lexer(), _formatter())).removesuffix("\n")


def code_styles() -> str:
    """The stylesheet for :func:`python_html`'s classes, scoped to ``.code``."""
    # types-Pygments leaves get_style_defs unannotated; it returns the stylesheet text
    return str(_formatter().get_style_defs(f".{CODE_CLASS}"))  # type: ignore[no-untyped-call]


@cache
def _lexer() -> PythonLexer:
    return PythonLexer(stripnl=False, ensurenl=False)


@cache
def _formatter() -> HtmlFormatter[str]:
    return HtmlFormatter(nowrap=True, style="default")
