"""The part of an HTTP-backed LM provider that does not depend on the API's shape.

Both hosted providers hold a JSON client and a pricer, hand back a completion whose text
goes into the sandbox (so it is scrubbed of their keys) and whose cost comes from the
price table, and close their connection pool. Kept apart from :mod:`hosted` because it
imports httpx, which ``import rlmbox`` must not pay for.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

from rlmbox.lm.base import Completion
from rlmbox.lm.http_json import JsonClient
from rlmbox.lm.prices import Pricer


class HttpProvider:
    """Base of :class:`AnthropicLM` and :class:`OpenAICompatibleLM`; subclasses set
    ``model``, ``secrets``, ``_pricer`` and ``_http`` in ``__init__``."""

    name: str
    model: str
    secrets: tuple[str, ...]
    _pricer: Pricer
    _http: JsonClient

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, http={self._http!r})"

    @property
    def retries(self) -> int:
        """Tries repeated after a retryable failure, over this provider's life."""
        return self._http.retries

    def _completion(self, text: str, served: object, chosen: str, input_tokens: int,
                    output_tokens: int) -> Completion:
        """The completion for model code: a server echoing the key must not put it in the
        sandbox; the cost is the price table's for the model that was asked for."""
        return Completion(
            text=self._http.redact(text),
            model=served if isinstance(served, str) else chosen,
            input_tokens=input_tokens, output_tokens=output_tokens,
            cost_usd=self._pricer.cost(chosen, input_tokens, output_tokens))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
