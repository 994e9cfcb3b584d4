"""rlms (PyPI ``rlms``, module ``rlm``): run the official RLM library's REPL in rlmbox.

rlms picks its environment from a closed list of names and has no registry for custom
ones, so there are two ways in, neither a fork:

- :class:`RlmboxRLM`, ``rlm.RLM`` whose completions' environments are rlmbox sandboxes:
  ``RlmboxRLM(backend=..., environment_kwargs={"policy": ...})``.
- :class:`RlmboxREPL`, a ``BaseEnv`` to drive directly, like rlms' own ``LocalREPL``.

Model code runs in an rlmbox session; ``llm_query`` from the sandbox is a host call that the
policy decides, the ledger budgets and the audit log records, and only then does
:class:`RlmsHandlerLM` forward it, from the host, to the RLM's own ``LMHandler`` socket.
"""

from rlmbox.adapters.rlms_env import RlmboxREPL
from rlmbox.adapters.rlms_handler import RlmsHandlerLM, stop_handler
from rlmbox.adapters.rlms_locals import SandboxValue
from rlmbox.adapters.rlms_rlm import ENVIRONMENT_NAME, RlmboxRLM

__all__ = ["ENVIRONMENT_NAME", "RlmboxREPL", "RlmboxRLM", "RlmsHandlerLM", "SandboxValue",
           "stop_handler"]
