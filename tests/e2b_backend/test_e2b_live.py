"""The e2b backend against real E2B: runs only when the test run was started with
``E2B_API_KEY`` (and, for self-hosted E2B, ``E2B_DOMAIN``) set; skips otherwise.

The security corpus runs on real E2B too with ``RLMBOX_E2B_LIVE=1``:
``RLMBOX_E2B_LIVE=1 E2B_API_KEY=... pytest tests/security -k e2b``. These cases need a
template named by ``RLMBOX_E2B_TEMPLATE`` (default ``code-interpreter-v1``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2b_double.env import LIVE_E2B_ENV, use_live_e2b

from rlmbox.lm.scripted import ScriptedLM
from rlmbox.runtime.runtime import Runtime

pytestmark = pytest.mark.skipif("E2B_API_KEY" not in LIVE_E2B_ENV,
                                reason="live E2B: set E2B_API_KEY to run")


@pytest.fixture
def live_runtime(tmp_path: Path) -> Iterator[Runtime]:
    use_live_e2b()
    policy = tmp_path / "policy.yaml"
    policy.write_text(json.dumps({
        "version": 1, "name": "e2b-live", "limits": {"cell_timeout_s": 10},
        "isolation": {"backend": "e2b", "e2b": {
            "template": os.environ.get("RLMBOX_E2B_TEMPLATE", "code-interpreter-v1"),
            "timeout_s": 300, "cpu": 1, "memory_mb": 256}},
        "rules": [{"id": "permit-llm", "effect": "permit", "function": "llm_query"}]}))
    rt = Runtime(policy, lm=ScriptedLM(default="lm-answer"), audit_dir=tmp_path / "audit")
    yield rt
    rt.close()


def test_live_session_runs_cells_and_host_calls(live_runtime: Runtime) -> None:
    with live_runtime.session(context="live context") as session:
        result = session.exec("x = len(context)\nprint(x, llm_query('hi'))")
        assert result.status == "ok", result.error
        assert result.stdout.split() == ["12", "lm-answer"]


def test_live_interrupt_and_network_off(live_runtime: Runtime) -> None:
    with live_runtime.session() as session:
        result = session.exec("import time\ntry:\n    time.sleep(60)\n"
                              "except KeyboardInterrupt:\n    print('stopped')\n")
        assert result.status == "interrupted"
        probe = session.exec("import socket\ntry:\n    socket.create_connection"
                             "(('1.1.1.1', 443), timeout=5); print('reached')\n"
                             "except OSError:\n    print('blocked')\n")
        assert probe.stdout.strip() == "blocked"
