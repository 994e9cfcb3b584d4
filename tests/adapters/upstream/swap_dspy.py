"""A pytest plugin that runs DSPy's own tests with rlmbox in place of DSPy's interpreters.

Loaded with ``-p swap_dspy`` (its directory on the path) by ``run_dspy_suite.py``: before the
authors' test modules import them, ``PythonInterpreter`` (dspy.RLM's default) and
``LocalInterpreter`` become ``RlmboxInterpreter`` subclasses, under the default policy plus
one rule that permits the tools the tests register (the policy a user writes to give
``dspy.RLM`` its tools). Assertions are untouched.

With ``RLMBOX_DSPY_STANDIN=local`` it is a control instead: DSPy's own ``LocalInterpreter``
takes ``PythonInterpreter``'s place, for machines without Deno (which ``PythonInterpreter``
needs), so the tests that fail only from version skew between the authors' tests and the
installed dspy are told apart from rlmbox's differences.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import dspy
import dspy.predict.rlm as dspy_rlm
import dspy.primitives as dspy_primitives
import dspy.primitives.local_interpreter as dspy_local
import dspy.primitives.python_interpreter as dspy_python
import yaml

from rlmbox.adapters.dspy import RlmboxInterpreter
from rlmbox.audit.log import AuditLog
from rlmbox.policies.model import load_policy

_HERE = Path(os.environ.get("RLMBOX_AUDIT_DIR") or tempfile.mkdtemp(prefix="rlmbox-dspy-"))
_HERE.mkdir(parents=True, exist_ok=True)
# one writer for every interpreter the authors' tests make (many never shut down)
_AUDIT = AuditLog(_HERE / "audit")


def _policy_with_tools() -> Path:
    policy = load_policy("default").model_dump(mode="json")
    policy["name"] = "dspy-upstream"
    policy["rules"] = [*policy["rules"],
                       {"id": "permit-tools", "effect": "permit", "function": "tool.*"}]
    path = _HERE / "policy.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")
    return path


_POLICY = _policy_with_tools()


class SwappedInterpreter(RlmboxInterpreter):
    """DSPy's interpreters' constructor, rlmbox's sandbox."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("policy", _POLICY)
        kwargs.setdefault("audit", _AUDIT)
        super().__init__(*args, **kwargs)

    @property
    def _process(self) -> object | None:
        """What DSPy's tests read to ask "has the interpreter started its worker?": for
        rlmbox, the session (read for identity only; it is not a process)."""
        return self._session

    deno_process = _process


class LocalStandIn(dspy_local.LocalInterpreter):  # type: ignore[misc]  # dspy: untyped
    """DSPy's ``LocalInterpreter`` in ``PythonInterpreter``'s place (the control)."""

    @property
    def deno_process(self) -> object | None:
        process: object | None = self._process
        return process


def swap(standin: type) -> None:
    """``PythonInterpreter`` (and, for rlmbox, ``LocalInterpreter``) become ``standin``."""
    default = dspy_python.PythonInterpreter
    for module in (dspy, dspy_primitives, dspy_python, dspy_rlm):
        module.PythonInterpreter = standin
    if standin is SwappedInterpreter:
        for module in (dspy, dspy_primitives, dspy_local):
            module.LocalInterpreter = standin
    # dspy.RLM's default factory was bound when its ``__init__`` was defined
    dspy_rlm.RLM.__init__.__defaults__ = tuple(
        standin if value is default else value
        for value in dspy_rlm.RLM.__init__.__defaults__ or ())


swap(LocalStandIn if os.environ.get("RLMBOX_DSPY_STANDIN") == "local" else SwappedInterpreter)
