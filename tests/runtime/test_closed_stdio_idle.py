"""A cell that closes fds 1 and 2 leaves the agent idle between and during later cells:
the output pump does not spin on the pipes' end (it spun at most of a CPU, charged to
the sandbox's CPU limit and to the machine). Later cells still run, and a cell that
opens new fds 1 and 2 has them as it would anywhere."""

from __future__ import annotations

import pytest

from rlmbox.runtime.runtime import Runtime

# the agent's CPU over half a second of the cell's own sleep: the agent's threads only
MEASURE = """
import time
t = time.process_time()
time.sleep(0.5)
spent = time.process_time() - t
"""

CLOSES = {
    "fds 1 and 2": "import os\nos.close(1)\nos.close(2)",
    "fd 1 only": "import os\nos.close(1)",
}


@pytest.mark.parametrize("cell", CLOSES.values(), ids=CLOSES.keys())
def test_closing_the_output_fds_does_not_make_the_agent_spin(runtime: Runtime,
                                                             cell: str) -> None:
    with runtime.session() as s:
        closed = s.exec(cell)
        measured = s.exec(MEASURE + "FINAL(spent)")
        after = s.exec("FINAL(6 * 7)")
    assert closed.status == "ok", closed.error
    assert measured.status == "ok", measured.error
    assert isinstance(measured.answer, float)
    assert measured.answer < 0.1, f"the agent used {measured.answer:.3f} CPU-s in 0.5 s idle"
    assert after.status == "ok"
    assert after.answer == 42


def test_output_still_reaches_the_host_after_another_cell_closed_stderr(
        runtime: Runtime) -> None:
    with runtime.session() as s:
        assert s.exec("import os\nos.close(2)").status == "ok"
        printed = s.exec("print('still here')")
    assert printed.stdout == "still here\n"
