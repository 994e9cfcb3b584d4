"""A cell that takes SIGINT's handler over does not keep it: the agent owns it again when
the cell ends, so an interrupt that arrives late (between cells) does not end the session,
and the next cell is still interruptible."""

from __future__ import annotations

import time

import pytest

from rlmbox.runtime.runtime import Runtime

TAKE_OVER = {
    "default action": "import signal\nsignal.signal(signal.SIGINT, signal.SIG_DFL)",
    "ignored": "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)",
    "own handler": "import signal\nsignal.signal(signal.SIGINT, lambda *a: None)",
}


@pytest.mark.parametrize("cell", TAKE_OVER.values(), ids=TAKE_OVER.keys())
def test_a_late_interrupt_after_a_cell_that_took_sigint_keeps_the_session(
        runtime: Runtime, cell: str) -> None:
    with runtime.session() as s:
        assert s.exec(cell).status == "ok"
        s.sandbox.interrupt()   # a SIGINT that arrives when no cell runs
        time.sleep(0.05)
        after = s.exec("print('alive')")
        stopped = s.exec("while True:\n    pass", timeout=1)
    assert after.status == "ok"
    assert after.stdout == "alive\n"
    assert stopped.status == "interrupted"
