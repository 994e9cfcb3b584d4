"""The LM side of the rlms adapter: ``llm_query`` forwarded from the host to rlms' ``LMHandler``.

The sandbox never learns the handler's address (its network is off anyway); the host sends
each admitted prompt with rlms' own socket protocol and keeps the completion for
``REPLResult.rlm_calls``.
"""

from __future__ import annotations

import threading

from rlm.core.comms_utils import LMRequest, send_lm_request
from rlm.core.lm_handler import LMHandler
from rlm.core.types import RLMChatCompletion

from rlmbox.lm.base import Completion


class RlmsHandlerLM:
    """An rlmbox LM provider that forwards to an rlms ``LMHandler`` over its socket.

    Mirrors ``LocalREPL._llm_query``: a handler error becomes the text ``"Error: ..."`` the
    model would see natively, not an exception. Each completion is kept (``drain``) so the
    environment can report it in ``REPLResult.rlm_calls``.
    """

    name = "rlms-handler"
    model = "rlms-handler-default"   # stands for the handler's own default model

    def __init__(self, address: tuple[str, int] | None = None, *, depth: int = 1,
                 timeout: int = 300) -> None:
        self.address = address
        self.depth = depth
        self.timeout = timeout
        self._lock = threading.Lock()
        self._calls: list[RLMChatCompletion] = []

    def complete(self, prompt: str, *, model: str | None = None) -> Completion:
        if self.address is None:
            return Completion(text="Error: No LM handler configured", model=model or "none")
        named = None if model == self.model else model   # the handler picks its default
        response = send_lm_request(self.address, LMRequest(prompt=prompt, model=named),
                                   timeout=self.timeout, depth=self.depth)
        chat = response.chat_completion
        if not response.success or chat is None:
            return Completion(text=f"Error: {response.error}", model=model or "unknown")
        with self._lock:
            self._calls.append(chat)
        usage = chat.usage_summary
        return Completion(
            text=str(chat.response), model=str(chat.root_model),
            input_tokens=int(usage.total_input_tokens or 0),
            output_tokens=int(usage.total_output_tokens or 0),
            cost_usd=float(usage.total_cost or 0.0))

    def drain(self) -> list[RLMChatCompletion]:
        """The completions made since the last drain, oldest first."""
        with self._lock:
            calls, self._calls = self._calls, []
        return calls

    def record(self, completion: RLMChatCompletion) -> None:
        """Keeps a completion made elsewhere (an ``rlm_query`` sub-call) for ``drain``."""
        with self._lock:
            self._calls.append(completion)


def stop_handler(handler: LMHandler) -> None:
    """Stops an ``LMHandler`` and closes its listening socket, which its ``stop`` leaves
    open (rlms 0.1.3)."""
    server = getattr(handler, "_server", None)
    LMHandler.stop(handler)
    if server is not None:
        server.server_close()
