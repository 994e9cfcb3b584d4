"""A permitted call is on disk before it runs: a log that cannot take the record stops it.

The sink is the real audit log, made to fail after the session has started (as a full
disk or a dead volume would); the tool and the LM count their own invocations.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from wrapped_log import WrappedLog

from rlmbox.audit.reader import iter_records
from rlmbox.errors import AuditWriteError
from rlmbox.lm.scripted import ScriptedLM
from rlmbox.runtime.runtime import Runtime

from .harness import policy_yaml


class FailingLog(WrappedLog):
    """The real log, until ``broken`` is set: then, once the next cell has been recorded
    as started (``code.exec``), ``append`` or ``sync`` fails, as a disk filling up
    mid-cell would."""

    def __init__(self, directory: Path, fail_in: str) -> None:
        super().__init__(directory)
        self.fail_in = fail_in
        self.broken = False
        self.cell_started = False

    def _failing(self, where: str) -> bool:
        return self.broken and self.cell_started and self.fail_in == where

    def append(self, event: str, *, session: str | None = None, parent: str | None = None,
               depth: int = 0, tenant: str | None = None,
               bodies: Mapping[str, str | bytes] | None = None,
               **attributes: Any) -> dict[str, Any]:
        if self._failing("append"):
            raise AuditWriteError("the disk is full")
        record = self.log.append(event, session=session, parent=parent, depth=depth,
                                 tenant=tenant, bodies=bodies, **attributes)
        self.cell_started = self.cell_started or event == "code.exec"
        return record

    def sync(self) -> None:
        if self._failing("sync"):
            raise AuditWriteError("fsync failed")
        self.log.sync()



@pytest.mark.parametrize("fail_in", ["append", "sync"])
@pytest.mark.parametrize("call", ["pay(5)", "llm_query('spend money')"])
def test_a_call_the_log_cannot_record_never_runs(backend: str, tmp_path: Path, fail_in: str,
                                                 call: str) -> None:
    """The log fails after the session started: the tool / paid LM call is not invoked,
    the cell fails closed, and what the log holds says no call started."""
    paid: list[int] = []

    def pay(amount: int) -> str:
        paid.append(amount)
        return "paid"

    lm = ScriptedLM(default="spent")
    sink = FailingLog(tmp_path / "audit", fail_in)
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_yaml(backend, rules=[
        {"id": "permit-pay", "effect": "permit", "function": "tool.pay"},
        {"id": "permit-llm", "effect": "permit", "function": "llm_query"}]))
    with Runtime(policy=policy, lm=lm, audit=sink, pool_size=0) as rt, \
            rt.session(tools={"pay": pay}) as session:
        assert session.exec("print(pay(1))").stdout == "paid\n"   # the tool works
        paid.clear()
        sink.broken = True
        with pytest.raises(AuditWriteError):
            session.exec(call)
        sink.broken = False
    sink.close()
    assert paid == []
    assert lm.prompts == []
    ran = [r for r in iter_records(tmp_path / "audit")
           if r["event"] == "host.call" and r.get("outcome") == "ok"]
    assert [r["args"] for r in ran] == [{"amount": 1}]   # the check that the tool works
