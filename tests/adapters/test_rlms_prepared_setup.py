"""The rlms environment's setup cell is compiled by the sandbox while its session starts.

Its source (``answer``, the loader, the locals report, inline data tools) is known before
the session starts unless a data value must be staged, so it goes to the session as
``prepare`` and its cell is not compiled on the set-up's path (issue 16: rlms setup).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from rlmbox.adapters._values import INLINE_LIMIT
from rlmbox.adapters.rlms import RlmboxREPL
from rlmbox.audit.log import AuditLog
from rlmbox.runtime.runtime import Runtime
from rlmbox.runtime.session import Session


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """What each session was asked to prepare, and the cells it ran."""
    log: dict[str, list[Any]] = {"prepare": [], "cells": []}
    real_session, real_exec = Runtime.session, Session.exec

    def session(self: Runtime, *args: Any, prepare: Sequence[str] = (), **kw: Any) -> Session:
        log["prepare"].append(list(prepare))
        return real_session(self, *args, prepare=prepare, **kw)

    def run(self: Session, code: str, **kw: Any) -> Any:
        log["cells"].append(code)
        return real_exec(self, code, **kw)

    monkeypatch.setattr(Runtime, "session", session)
    monkeypatch.setattr(Session, "exec", run)
    return log


@pytest.fixture
def make_env(policy_file: Callable[..., Path],
             tmp_path: Path) -> Iterator[Callable[..., RlmboxREPL]]:
    made: list[RlmboxREPL] = []
    log = AuditLog(tmp_path / "audit")

    def make(**kwargs: Any) -> RlmboxREPL:
        env = RlmboxREPL(policy=policy_file(), audit=log, **kwargs)
        made.append(env)
        return env

    yield make
    for env in made:
        env.cleanup()
    log.close()


@pytest.mark.parametrize("summary", [True, False])
def test_the_setup_cell_is_the_prepared_one(make_env: Callable[..., RlmboxREPL],
                                            seen: dict[str, list[Any]], summary: bool) -> None:
    env = make_env(context_payload="some text", custom_tools={"limit": 3},
                   locals_summary=summary)
    assert seen["prepare"] == [[seen["cells"][0]]]
    assert "limit = " in seen["cells"][0]
    assert env.execute_code("print(limit, len(context_0))").stdout == "3 9\n"


def test_a_staged_data_value_leaves_the_setup_cell_unprepared(
        make_env: Callable[..., RlmboxREPL], seen: dict[str, list[Any]]) -> None:
    big = "x" * (INLINE_LIMIT + 1)
    env = make_env(custom_tools={"big": big})
    assert seen["prepare"] == [[]]
    assert "_rlmbox_load(" in seen["cells"][0]
    assert env.execute_code("print(len(big))").stdout == f"{len(big)}\n"
