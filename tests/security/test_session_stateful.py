"""Hypothesis stateful test of a Session: random sequences of hostile and honest steps.

Steps: plain cells, failing cells, permitted host calls (until the budget runs out), forged
calls to unknown functions, cells interrupted at their wall time, cells killed for ignoring
the interrupt, closing, and opening a new session. After every step:

- the session is in a legal state for what happened (ready after a normal cell, dead after
  a kill and refusing cells, closed after close and refusing cells);
- the namespace holds exactly what the model says survived (interrupts keep it);
- the ledger is consistent: the host's count of admitted calls equals the model's, with
  nothing in flight, and the budget is never exceeded;
- no process of a dead or closed session's sandbox is alive.
At the end the runtime closes and its audit chain verifies.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from rlmbox.errors import SessionClosed, SessionKilled
from rlmbox.runtime.session import Session, SessionState

from .harness import Runtimes, Witness, assert_chain_valid, audit_records

CALL_BUDGET = 6
SHORT = 0.3   # per-cell wall time used for interrupt and kill steps (policy grace: 0.5 s)
FORGE_UNKNOWN = (
    "import json, struct, os\n"
    "_a = [c.cell_contents for c in llm_query.__closure__"
    " if type(c.cell_contents).__name__ == 'Agent'][0]\n"
    "_b = json.dumps({'t': 'call', 'call': 99999, 'fn': 'no.such', 'args': [],"
    " 'kwargs': {}}).encode()\n"
    "os.write(_a.io._write_fd, struct.pack('>I', len(_b)) + _b)\n")


class SessionMachine(RuleBasedStateMachine):
    """One runtime; a session that the rules drive, replace, kill and close."""

    factory: Runtimes   # set per backend by the test below

    def __init__(self) -> None:
        super().__init__()
        # gVisor (ptrace platform) delivers SIGINT more slowly: a short grace there would
        # make "interrupted" sometimes "killed" and the state machine non-deterministic
        grace = 3.0 if self.factory.backend == "docker-runsc" else 0.5
        self.rt = self.factory(limits={"interrupt_grace_s": grace},
                               budgets={"tree": {"calls": CALL_BUDGET,
                                                 "max_prompt_chars": 10000}})
        self.names = itertools.count()
        self.total_ok = 0   # llm_query calls answered, across every session of the runtime
        self.witnesses: list[Witness] = []
        self._open()

    def _open(self) -> None:
        self.session: Session = self.rt.session()
        self.witness = Witness(self.session)
        self.witnesses.append(self.witness)
        self.namespace: dict[str, int] = {}
        self.calls_ok = 0   # ... in this session's tree: a new root session has a new ledger

    @property
    def usable(self) -> bool:
        return self.session.state is SessionState.READY

    # --- rules ------------------------------------------------------------------------

    @precondition(lambda self: self.usable)
    @rule(value=st.integers(-10**6, 10**6))
    def assign(self, value: int) -> None:
        name = f"v{next(self.names)}"
        result = self.session.exec(f"{name} = {value}")
        assert result.status == "ok", result.error
        self.namespace[name] = value

    @precondition(lambda self: self.usable)
    @rule(message=st.text(alphabet="abcxyz ", max_size=20))
    def failing_cell(self, message: str) -> None:
        result = self.session.exec(f"raise ValueError({message!r})")
        assert result.status == "error"
        assert "ValueError" in (result.error or "")

    @precondition(lambda self: self.usable)
    @rule()
    def host_call(self) -> None:
        result = self.session.exec(
            "try:\n    print(llm_query('q'))\nexcept BudgetExceeded:\n    print('spent')\n")
        assert result.status == "ok", result.error
        if self.calls_ok < CALL_BUDGET:
            assert result.stdout == "lm-answer\n"
            self.calls_ok += 1
            self.total_ok += 1
        else:
            assert result.stdout == "spent\n"

    @precondition(lambda self: self.usable)
    @rule()
    def forged_unknown_call(self) -> None:
        result = self.session.exec(FORGE_UNKNOWN)
        assert result.status == "ok", result.error

    @precondition(lambda self: self.usable)
    @rule()
    def interrupted(self) -> None:
        result = self.session.exec("while True:\n    pass\n", timeout=SHORT)
        assert result.status == "interrupted"
        assert self.session.state is SessionState.READY

    @precondition(lambda self: self.usable)
    @rule()
    def killed(self) -> None:
        result = self.session.exec(
            "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
            "while True:\n    pass\n", timeout=SHORT)
        assert result.status == "killed"
        assert self.session.state is SessionState.DEAD
        with pytest.raises(SessionKilled):
            self.session.exec("print(1)")

    @precondition(lambda self: self.session.state is not SessionState.CLOSED)
    @rule()
    def close(self) -> None:
        self.session.close()
        assert self.session.state is SessionState.CLOSED
        with pytest.raises(SessionClosed):
            self.session.exec("print(1)")

    @precondition(lambda self: not self.usable)
    @rule()
    def reopen(self) -> None:
        self.session.close()
        self._open()

    # --- invariants ---------------------------------------------------------------------

    @invariant()
    def namespace_survives(self) -> None:
        if self.usable and self.namespace:
            names = sorted(self.namespace)
            result = self.session.exec(f"print([{', '.join(names)}])")
            assert result.stdout == f"{[self.namespace[n] for n in names]}\n"

    @invariant()
    def ledger_consistent(self) -> None:
        calls = [r for r in audit_records(self.rt) if r.get("event") == "host.call"
                 and r.get("function") == "llm_query"]
        assert len([r for r in calls if r.get("outcome") == "ok"]) == self.total_ok
        mine = [r for r in calls if r.get("session") == self.session.id]
        if mine:
            tree = mine[-1]["budget_after"]["tree"]
            assert tree["calls"] == self.calls_ok <= CALL_BUDGET
            assert tree["in_flight"] == 0

    @invariant()
    def no_leaked_process(self) -> None:
        for witness in self.witnesses:
            if witness is not self.witness or not self.usable:
                assert witness.survivors() == []

    def teardown(self) -> None:
        self.session.close()
        for witness in self.witnesses:
            assert witness.survivors() == []
        self.rt.close()
        assert_chain_valid(self.rt)


@pytest.mark.slow
def test_session_state_machine(backend: str, tmp_path: Path) -> None:
    """Random sequences of exec, interrupt, kill, host calls, budget exhaustion, close."""
    runs = itertools.count()

    class Machine(SessionMachine):
        def __init__(self) -> None:
            self.factory = Runtimes(backend, tmp_path / f"run-{next(runs)}")
            self.factory.root.mkdir()
            super().__init__()

        def teardown(self) -> None:
            try:
                super().teardown()
            finally:
                self.factory.close()

    config: Any = settings(max_examples=8, stateful_step_count=10, deadline=None,
                           suppress_health_check=list(HealthCheck), database=None)
    run_state_machine_as_test(Machine, settings=config)
