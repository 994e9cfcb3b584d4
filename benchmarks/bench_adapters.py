"""What running a frontend's REPL in rlmbox costs per cell, against the frontend's own REPL.

    PYTHONPATH=. python benchmarks/bench_adapters.py [--cells 200]

Prints a table of median and p99 wall time per cell (trivial cell ``x = 1``, and a cell
with one ``llm_query``) for:
  * rlms: ``LocalREPL`` (in-process, no isolation) vs ``RlmboxREPL`` with and without the
    locals summary (one extra cell per cell); ``llm_query`` goes to an rlms ``LMHandler``
    whose client answers at once, so the figure is the brokering, not an LM;
  * DSPy: ``LocalInterpreter`` (a local CPython worker, no isolation) vs ``RlmboxInterpreter``.
Also the time to set an environment up as a frontend does at each completion (a new
``RlmboxREPL``: a session and the setup cell), with no pool (a Runtime per environment,
a cold sandbox) and with ``pool_size=1`` (the process's shared runtime, whose pool is
full before each set-up).
Every rlmbox cell is audited and fsynced before it returns (durability "cell").
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import floors as fl
from dspy.primitives.local_interpreter import LocalInterpreter
from figures import Table, timed
from rlm.clients.base_lm import BaseLM
from rlm.core.lm_handler import LMHandler
from rlm.core.types import ModelUsageSummary, UsageSummary
from rlm.environments.local_repl import LocalREPL

from rlmbox.adapters.dspy import RlmboxInterpreter
from rlmbox.adapters.rlms import RlmboxREPL, stop_handler
from rlmbox.audit.log import AuditLog
from rlmbox.policies.model import load_policy
from rlmbox.runtime.runtime import Runtime
from rlmbox.runtime.shared import close_shared_runtimes


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


def setups(make: Callable[[], Any], close: Callable[[Any], None], n: int) -> list[float]:
    """Seconds to make an environment, as a frontend does at each completion; each one is
    closed outside the timing, and a pool it drew from is full again before the next."""
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        env = make()
        samples.append(time.perf_counter() - started)
        close(env)
        pool = env.runtime.pool() if isinstance(getattr(env, "runtime", None), Runtime) else None
        if pool is not None and not pool.wait_full(60):
            raise RuntimeError(f"the warm pool did not refill: {pool.last_error}")
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cells", type=int, default=200)
    parser.add_argument("--setups", type=int, default=10, help="environments made per REPL")
    args = parser.parse_args()
    n = args.cells
    table = Table("frontends: rlms and DSPy REPLs on rlmbox against their own")
    audit_dir = Path(tempfile.mkdtemp(prefix="bench-adapters-"))
    table.floors = fl.measure([fl.PIPE, fl.EXEC, fl.FSYNC, fl.BWRAP_PYTHON], table=table.title,
                              reps=max(200, n), starts=3, audit_dir=audit_dir,
                              policy=load_policy("default"))
    cell = (fl.FSYNC, fl.PIPE, fl.EXEC)   # every rlmbox cell here is fsynced before it returns
    handler = LMHandler(InstantLM())
    handler.start()
    log = AuditLog(audit_dir)
    dspy_tools = {"llm_query": lambda prompt: "ok"}
    try:
        native = LocalREPL(lm_handler_address=handler.address)
        table.add("rlms LocalREPL (in-process)", "x = 1",
                  timed(lambda: native.execute_code("x = 1"), n), floor=(fl.EXEC,))
        table.add("rlms LocalREPL (in-process)", "llm_query",
                  timed(lambda: native.execute_code("y = llm_query('hi')"), n))
        native.cleanup()
        for summary in (False, True):
            name = f"RlmboxREPL process (locals summary {'on' if summary else 'off'})"
            for pool in (0, 1):
                make = partial(RlmboxREPL, lm_handler_address=handler.address, audit=log,
                               locals_summary=summary, pool_size=pool)
                if pool:   # warm: the shared runtime's pool is full before the first set-up
                    setups(make, lambda env: env.cleanup(), 1)
                table.add(name, f"setup per completion (pool_size={pool})",
                          setups(make, lambda env: env.cleanup(), args.setups),
                          floor=(fl.BWRAP_PYTHON,),
                          note="the process's shared runtime: its pool full before each"
                          if pool else "a new Runtime per environment, cold")
            env = RlmboxREPL(lm_handler_address=handler.address, audit=log,
                             locals_summary=summary)
            table.add(name, "x = 1", timed(partial(env.execute_code, "x = 1"), n), floor=cell)
            table.add(name, "llm_query",
                      timed(partial(env.execute_code, "y = llm_query('hi')"), n), floor=cell)
            env.cleanup()
        local = LocalInterpreter(tools=dict(dspy_tools))
        table.add("DSPy LocalInterpreter", "x = 1", timed(lambda: local.execute("x = 1"), n),
                  floor=(fl.PIPE, fl.EXEC))
        table.add("DSPy LocalInterpreter", "llm_query",
                  timed(lambda: local.execute("y = llm_query('hi')"), n))
        local.shutdown()

        def boxed_setup() -> RlmboxInterpreter:
            interpreter = RlmboxInterpreter(tools=dict(dspy_tools), audit=log)
            interpreter.execute("pass")
            return interpreter

        table.add("RlmboxInterpreter process", "setup (first execute)",
                  setups(boxed_setup, lambda env: env.shutdown(), args.setups),
                  floor=(fl.BWRAP_PYTHON,))
        boxed = boxed_setup()
        table.add("RlmboxInterpreter process", "x = 1", timed(lambda: boxed.execute("x = 1"), n),
                  floor=cell)
        table.add("RlmboxInterpreter process", "llm_query",
                  timed(lambda: boxed.execute("y = llm_query('hi')"), n), floor=cell)
        boxed.shutdown()
    finally:
        stop_handler(handler)
        close_shared_runtimes()
        log.close()
        shutil.rmtree(audit_dir, ignore_errors=True)
    table.print(f"{n} cells each, {args.setups} set-ups each; the default preset, cell "
                "durability (every cell fsynced before it returns)")


if __name__ == "__main__":
    main()
