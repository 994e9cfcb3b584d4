"""What running a frontend's REPL in rlmbox costs per cell, against the frontend's own REPL.

    PYTHONPATH=. python benchmarks/bench_adapters.py [--cells 200]

Prints a table of median and p95 wall time per cell (trivial cell ``x = 1``, and a cell
with one ``llm_query``) for:
  * rlms: ``LocalREPL`` (in-process, no isolation) vs ``RlmboxREPL`` with and without the
    locals summary (one extra cell per cell); ``llm_query`` goes to an rlms ``LMHandler``
    whose client answers at once, so the figure is the brokering, not an LM;
  * DSPy: ``LocalInterpreter`` (a local CPython worker, no isolation) vs ``RlmboxInterpreter``.
Also the time to set an environment up (session start, setup cell), cold (no warm pool).
Every rlmbox cell is audited and fsynced before it returns (durability "cell").
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from dspy.primitives.local_interpreter import LocalInterpreter
from rlm.clients.base_lm import BaseLM
from rlm.core.lm_handler import LMHandler
from rlm.core.types import ModelUsageSummary, UsageSummary
from rlm.environments.local_repl import LocalREPL

from rlmbox.adapters.dspy import RlmboxInterpreter
from rlmbox.adapters.rlms import RlmboxREPL, stop_handler
from rlmbox.audit.log import AuditLog


class InstantLM(BaseLM):  # type: ignore[misc]
    """An rlms client that answers at once (the benchmark measures the path, not a model)."""

    def __init__(self) -> None:
        super().__init__(model_name="instant")

    def completion(self, prompt: Any) -> str:
        return "ok"

    async def acompletion(self, prompt: Any) -> str:
        return "ok"

    def get_usage_summary(self) -> UsageSummary:
        return UsageSummary(model_usage_summaries={})

    def get_last_usage(self) -> ModelUsageSummary:
        return ModelUsageSummary(total_calls=1, total_input_tokens=1, total_output_tokens=1)


def timed(fn: Callable[[], Any], n: int) -> tuple[float, float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    samples.sort()
    return statistics.median(samples) * 1000, samples[int(len(samples) * 0.95) - 1] * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cells", type=int, default=200)
    args = parser.parse_args()
    n = args.cells
    rows: list[tuple[str, str, float, float]] = []
    handler = LMHandler(InstantLM())
    handler.start()
    log = AuditLog(Path(tempfile.mkdtemp(prefix="bench-adapters-")))
    dspy_tools = {"llm_query": lambda prompt: "ok"}
    try:
        native = LocalREPL(lm_handler_address=handler.address)
        rows += [("rlms LocalREPL", "x = 1", *timed(lambda: native.execute_code("x = 1"), n)),
                 ("rlms LocalREPL", "llm_query", *timed(
                     lambda: native.execute_code("y = llm_query('hi')"), n))]
        native.cleanup()
        for summary in (False, True):
            started = time.perf_counter()
            env = RlmboxREPL(lm_handler_address=handler.address, audit=log,
                             locals_summary=summary)
            setup = (time.perf_counter() - started) * 1000
            name = f"RlmboxREPL (locals summary {'on' if summary else 'off'})"
            rows += [(name, "setup", setup, setup),
                     (name, "x = 1", *timed(partial(env.execute_code, "x = 1"), n)),
                     (name, "llm_query", *timed(
                         partial(env.execute_code, "y = llm_query('hi')"), n))]
            env.cleanup()
        local = LocalInterpreter(tools=dict(dspy_tools))
        rows += [("DSPy LocalInterpreter", "x = 1", *timed(lambda: local.execute("x = 1"), n)),
                 ("DSPy LocalInterpreter", "llm_query", *timed(
                     lambda: local.execute("y = llm_query('hi')"), n))]
        local.shutdown()
        started = time.perf_counter()
        boxed = RlmboxInterpreter(tools=dict(dspy_tools), audit=log)
        boxed.execute("pass")
        setup = (time.perf_counter() - started) * 1000
        rows += [("RlmboxInterpreter", "setup", setup, setup),
                 ("RlmboxInterpreter", "x = 1", *timed(lambda: boxed.execute("x = 1"), n)),
                 ("RlmboxInterpreter", "llm_query", *timed(
                     lambda: boxed.execute("y = llm_query('hi')"), n))]
        boxed.shutdown()
    finally:
        stop_handler(handler)
        log.close()
    print(f"{n} cells each; milliseconds per cell")
    print(f"{'REPL':<38} {'cell':<10} {'median':>8} {'p95':>8}")
    for name, cell, median, p95 in rows:
        print(f"{name:<38} {cell:<10} {median:>8.2f} {p95:>8.2f}")


if __name__ == "__main__":
    main()
