"""The scripted LM provider: deterministic answers for offline runs, demos and tests.

A product feature, not a test double: it lets a whole RLM trajectory run with no network.
Answers come from a list (in order), a function, or a JSON file of prompt patterns:

    {"rules": [{"match": "secret", "response": "42"}], "default": "I don't know",
     "responses": ["first answer", "second answer"]}

Rules are regular expressions searched in the prompt, first match wins; then the
``responses`` list in order; then ``default``.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rlmbox.errors import LMError
from rlmbox.lm.base import Completion, estimate_tokens


class ScriptedLM:
    """Answers prompts from a script. Thread-safe (batched calls run concurrently)."""

    name = "scripted"

    def __init__(self, script: Sequence[str] | Callable[[str], str] | str | Path | None = None,
                 *, default: str | None = None, model: str = "scripted") -> None:
        self._lock = threading.Lock()
        self._fn: Callable[[str], str] | None = None
        self._responses: list[str] = []
        self._rules: list[tuple[re.Pattern[str], str]] = []
        self._default = default
        self.model = model
        self.prompts: list[str] = []
        if callable(script):
            self._fn = script
        elif isinstance(script, str | Path):
            self._load(Path(script))
        elif isinstance(script, Sequence) and not isinstance(script, str):
            self._responses = [str(item) for item in script]
        elif script is not None:
            raise LMError(f"a scripted LM takes a list, a function or a JSON file, not {script!r}")

    def _load(self, path: Path) -> None:
        try:
            data: Any = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise LMError(f"cannot read the LM script {path}: {exc}") from exc
        if isinstance(data, list):
            data = {"responses": data}
        if not isinstance(data, dict):
            raise LMError(f"{path}: the script must be a JSON object or list")
        for index, rule in enumerate(data.get("rules", [])):
            try:
                self._rules.append((re.compile(rule["match"]), str(rule["response"])))
            except (KeyError, TypeError, re.error) as exc:
                raise LMError(f"{path}: rules[{index}] needs 'match' (a regex) and 'response'"
                              ) from exc
        self._responses = [str(item) for item in data.get("responses", [])]
        if "default" in data:
            self._default = str(data["default"])

    def complete(self, prompt: str, *, model: str | None = None) -> Completion:
        with self._lock:
            self.prompts.append(prompt)
            text = self._answer(prompt)
        return Completion(text=text, model=model or self.model,
                          input_tokens=estimate_tokens(prompt),
                          output_tokens=estimate_tokens(text))

    def _answer(self, prompt: str) -> str:
        if self._fn is not None:
            return self._fn(prompt)
        for pattern, response in self._rules:
            if pattern.search(prompt):
                return response
        if self._responses:
            return self._responses.pop(0)
        if self._default is not None:
            return self._default
        raise LMError("the scripted LM has no answer left for this prompt")
