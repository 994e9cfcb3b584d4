"""A pytest plugin that runs rlms' own tests with rlmbox in place of rlms' environment.

Loaded with ``-p swap_rlms`` (its directory on the path) by ``run_rlms_suite.py``: before the
authors' test modules import them, ``LocalREPL`` becomes an ``RlmboxREPL`` and ``rlm.RLM`` an
``RlmboxRLM`` (environment ``"local"`` mapped to ``"rlmbox"``). Assertions are untouched.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import rlm
import rlm.core.rlm as rlm_core
import rlm.environments as rlm_environments
from rlm.environments import local_repl

from rlmbox.adapters.rlms import RlmboxREPL, RlmboxRLM
from rlmbox.audit.log import AuditLog

# one writer for every environment the authors' tests make (many never call cleanup)
_AUDIT = AuditLog(Path(os.environ.get("RLMBOX_AUDIT_DIR")
                       or tempfile.mkdtemp(prefix="rlmbox-upstream-")))


class SwappedREPL(RlmboxREPL):
    """``LocalREPL``'s constructor, rlmbox's sandbox (the default policy)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("policy", "default")
        kwargs.setdefault("audit", _AUDIT)
        super().__init__(*args, **kwargs)


class SwappedRLM(RlmboxRLM):
    """``rlm.RLM``'s constructor; rlms' own environment names run on rlmbox."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["environment"] = "rlmbox"
        env_kwargs = dict(kwargs.get("environment_kwargs") or {})
        env_kwargs.setdefault("audit", _AUDIT)
        kwargs["environment_kwargs"] = env_kwargs
        super().__init__(*args, **kwargs)


local_repl.LocalREPL = SwappedREPL
rlm_environments.LocalREPL = SwappedREPL
rlm.RLM = SwappedRLM
rlm_core.RLM = SwappedRLM
