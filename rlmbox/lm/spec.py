"""LM provider specs: one string names a provider, for the CLI and config files.

    scripted:PATH            a scripted provider from a JSON file (see scripted.py)
    PATH                     the same (the form ``rlmbox run`` always took)
    anthropic:MODEL          Anthropic's Messages API; key from $ANTHROPIC_API_KEY;
                             $RLMBOX_ANTHROPIC_BASE_URL overrides https://api.anthropic.com
    openai:MODEL@BASE_URL    an OpenAI-compatible server; key from $OPENAI_API_KEY (may
                             be absent); without @BASE_URL, $RLMBOX_OPENAI_BASE_URL or
                             https://api.openai.com/v1
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from rlmbox.errors import LMError
from rlmbox.lm.base import LMProvider
from rlmbox.lm.scripted import ScriptedLM

OPENAI_URL = "https://api.openai.com/v1"
SPEC_HELP = ("scripted:PATH (or a bare PATH to a scripted JSON file), anthropic:MODEL, "
             "or openai:MODEL@BASE_URL")


def provider_from_spec(text: str, *, allow_unpriced: bool = False,
                       environ: Mapping[str, str] | None = None) -> LMProvider:
    """The provider ``text`` names; LMError saying what is wrong otherwise.

    Args:
        allow_unpriced: count models without a known price as 0 USD (see prices.py).
        environ: where base-URL overrides and keys are read (default ``os.environ``).
    """
    env = os.environ if environ is None else environ
    kind, sep, rest = text.partition(":")
    if not sep or kind not in ("scripted", "anthropic", "openai"):
        if sep and not Path(text).exists():
            raise LMError(f"unknown LM spec {text!r}: expected {SPEC_HELP}")
        return ScriptedLM(Path(text))
    if not rest:
        raise LMError(f"LM spec {text!r} names no {'path' if kind == 'scripted' else 'model'}"
                      f"; expected {SPEC_HELP}")
    if kind == "scripted":
        return ScriptedLM(Path(rest))
    if kind == "anthropic":
        if not env.get("ANTHROPIC_API_KEY", "").strip():
            raise LMError(f"{text} needs an API key: set ANTHROPIC_API_KEY")
        # the SDKs load on first use: the CLI's parser and `import rlmbox` stay light
        from rlmbox.lm.anthropic import ANTHROPIC_URL, AnthropicLM  # noqa: PLC0415

        return AnthropicLM(rest, api_key=env.get("ANTHROPIC_API_KEY", ""),
                           base_url=env.get("RLMBOX_ANTHROPIC_BASE_URL") or ANTHROPIC_URL,
                           allow_unpriced=allow_unpriced)
    model, at, base_url = rest.partition("@")
    if not model or (at and not base_url):
        raise LMError(f"LM spec {text!r}: expected openai:MODEL@BASE_URL")
    from rlmbox.lm.openai_compat import OpenAICompatibleLM  # noqa: PLC0415

    return OpenAICompatibleLM(
        model, base_url or env.get("RLMBOX_OPENAI_BASE_URL") or OPENAI_URL,
        api_key=env.get("OPENAI_API_KEY", ""), allow_unpriced=allow_unpriced)
