"""rlmbox's full stack on every backend, each figure beside its floor, in one run.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_stack.py [--quick | --smoke] [--only M]

``--only starts|cells|llm_query`` runs one method alone (with its floors), to bisect or to
compare a change; a full run takes every method.

For process, docker/runc and docker/runsc (those this machine has), under the default
preset with only the backend changed (``stack.py``):
  * session start cold (``pool_size=0``: no pool at all, every session starts a sandbox)
    and session close, in the same loop;
  * session start warm: a pool of one that was full before each measurement, and beside
    it the part of each start spent in the audit log's sync (``session.create``'s fsync
    under cell durability), so that a slow disk and slow code can be told apart;
  * per durability ("cell": the cell's events fsynced before ``exec`` returns; "session":
    fsynced in the background): a trivial cell (``x = 1``), distinct cells (``v<i> = <i>``,
    each new code, so each has a new body in the audit store) and ``llm_query`` with an
    instant LM, timed inside the sandbox around each call.
Floors (``floors.py``) are measured in the same run and each row prints its ratio to them.
One attribution row (process, audit discarded) shows what the audit record costs; it is
not a product mode.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import floors as fl
from figures import Table, timed
from modes import chosen, mode_parser
from stack import LLM_LOOP, available_backends, loop_result, stack_policy, system_name

from rlmbox.audit.log import AuditLog
from rlmbox.lm.scripted import ScriptedLM
from rlmbox.runtime.runtime import Runtime

TRIVIAL = "x = 1"
Durability = Literal["cell", "session"]
DURABILITIES: tuple[Durability, ...] = ("cell", "session")
METHODS = ("starts", "cells", "llm_query")


@dataclass(frozen=True)
class Reps:
    starts: int
    cells: int
    calls: int
    floor_reps: int


SMOKE = Reps(starts=1, cells=5, calls=5, floor_reps=20)
QUICK = Reps(starts=3, cells=100, calls=100, floor_reps=1000)
FULL = Reps(starts=20, cells=1000, calls=400, floor_reps=5000)


def start_floor(backend: str, runtime: str | None) -> tuple[str, ...]:
    return (fl.BWRAP_PYTHON,) if runtime is None else (fl.docker_run(runtime),)


def bench_starts(table: Table, backend: str, runtime: str | None, reps: Reps,
                 audit: str) -> None:
    system = system_name(backend, runtime)
    policy = stack_policy(backend, runtime)
    lm = ScriptedLM(default="ok")
    with Runtime(policy, lm=lm, audit_dir=audit, pool_size=0) as rt:
        rt.session().close()   # the isolation probe and page cache, outside the timing
        opens, closes = [], []
        for _ in range(reps.starts):
            started = time.perf_counter()
            session = rt.session()
            opened = time.perf_counter()
            session.close()
            opens.append(opened - started)
            closes.append(time.perf_counter() - opened)
        table.add(system, "session start, cold (no pool)", opens,
                  floor=start_floor(backend, runtime))
        table.add(system, "session close", closes)
    log = AuditLog(Path(audit))
    clock = SyncClock(log)
    with log, Runtime(policy, lm=lm, audit=log, pool_size=1) as rt:
        rt.warm_up()
        pool = rt.pool()
        if pool is None:
            table.fail(system, "session start, warm pool", "the runtime made no pool")
            return
        warm, synced = [], []
        for _ in range(reps.starts):
            pool.wait_full(120)   # full before the measurement; refilled outside it
            clock.spent = 0.0
            started = time.perf_counter()
            session = rt.session()
            warm.append(time.perf_counter() - started)
            synced.append(clock.spent)
            session.close()
        table.add(system, "session start, warm pool (full before)", warm,
                  floor=(fl.FSYNC, fl.PIPE))
        table.add(system, "of a warm start, the audit log's sync", synced, floor=(fl.FSYNC,),
                  note="the syncs inside session(): session.create, written and fsynced")


class SyncClock:
    """Adds up the time an audit log's ``sync`` takes, by wrapping it on the instance."""

    def __init__(self, log: AuditLog) -> None:
        self.spent = 0.0
        sync = log.sync

        def timed_sync() -> None:
            started = time.perf_counter()
            try:
                sync()
            finally:
                self.spent += time.perf_counter() - started

        log.sync = timed_sync   # type: ignore[method-assign]


def bench_cells(table: Table, backend: str, runtime: str | None, reps: Reps, audit: str,
                durability: Durability, methods: frozenset[str]) -> None:
    label = f"{system_name(backend, runtime)} ({durability} durability)"
    durable = (fl.FSYNC,) if durability == "cell" else ()
    with Runtime(stack_policy(backend, runtime), lm=ScriptedLM(default="ok"), audit_dir=audit,
                 pool_size=0, durability=durability) as rt, rt.session() as session:
        first = session.exec(TRIVIAL)
        if first.status != "ok":
            table.fail(label, "trivial cell", f"{first.status}: {first.error}")
            return
        timed(partial(session.exec, TRIVIAL), 20)   # warm the path
        if "cells" in methods:
            table.add(label, "trivial cell", timed(partial(session.exec, TRIVIAL), reps.cells),
                      floor=(*durable, fl.PIPE, fl.EXEC))
            codes = iter(range(reps.cells))
            table.add(label, f"distinct cell ({reps.cells} different cells)",
                      timed(lambda: session.exec(f"v{next(codes)} = 1"), reps.cells),
                      floor=(*durable, fl.PIPE, fl.EXEC))
        if "llm_query" in methods:
            llm_query_row(table, label, session, reps.calls)


def llm_query_row(table: Table, label: str, session: Any, calls: int,
                  floor: tuple[str, ...] = (fl.PIPE, fl.DECISION, fl.FSYNC)) -> None:
    """Each call's ``host.call.start`` is fsynced before it runs, under either durability,
    so its floor holds an fsync; an audit that records nothing is given one without."""
    result = session.exec(LLM_LOOP.format(n=calls))
    samples, reply = loop_result(result.stdout)
    if result.status != "ok" or reply != "ok":
        table.fail(label, "llm_query, instant LM", f"{result.error or reply}")
    else:
        table.add(label, "llm_query, instant LM (timed inside)", samples, floor=floor)


class DiscardingAudit:
    """Attribution only, not a product mode: an audit sink that records nothing, to show
    what the per-call audit record (redaction, canonical JSON, hash chain, fsync) costs."""

    def append(self, event: str, **attributes: Any) -> dict[str, Any]:
        return {}

    def sync(self) -> None:
        pass

    def add_secret(self, value: str) -> None:
        pass

    def redact(self, text: str) -> str:
        return text

    def close(self) -> None:
        pass


def bench_attribution(table: Table, reps: Reps) -> None:
    with Runtime(stack_policy("process", None), lm=ScriptedLM(default="ok"),
                 audit=DiscardingAudit(), pool_size=0) as rt, rt.session() as session:
        llm_query_row(table, "rlmbox process, audit discarded (attribution only)", session,
                      reps.calls, floor=(fl.PIPE, fl.DECISION))


def guarded(table: Table, system: str, measure: str, run: Any) -> None:
    """One section; a failure becomes a row saying how instead of ending the run."""
    try:
        run()
    except Exception as exc:  # a backend failing is a result to report
        table.fail(system, measure, f"{type(exc).__name__}: {exc}")


def main() -> int:
    parser = mode_parser(__doc__)
    parser.add_argument("--only", choices=METHODS, help="run this method alone")
    args = parser.parse_args()
    methods = frozenset((args.only,) if args.only else METHODS)
    reps = chosen(args, smoke=SMOKE, quick=QUICK, full=FULL)
    backends, image, no_docker = available_backends()
    table = Table("full stack: Session + policy + ledger + audit")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-stack-audit-") as audit:
        names = [fl.PIPE, fl.EXEC, fl.FSYNC, fl.DECISION, fl.BWRAP_TRUE, fl.BWRAP_PYTHON]
        names += [fl.docker_run(r) for _, r in backends if r is not None]
        table.floors = fl.measure(names, table=table.title, reps=reps.floor_reps,
                                  starts=max(3, reps.starts), audit_dir=Path(audit),
                                  policy=stack_policy("process", None), image=image)
        for backend, runtime in backends:
            system = system_name(backend, runtime)
            if "starts" in methods:
                guarded(table, system, "(starts)",
                        partial(bench_starts, table, backend, runtime, reps, audit))
            for durability in DURABILITIES:
                if methods & {"cells", "llm_query"}:
                    guarded(table, system, f"(cells, {durability} durability)",
                            partial(bench_cells, table, backend, runtime, reps, audit,
                                    durability, methods))
        if "llm_query" in methods:
            guarded(table, "rlmbox process", "(attribution)",
                    partial(bench_attribution, table, reps))
    if no_docker:
        table.fail("rlmbox docker", "(engine)", no_docker)
    table.print(f"{'smoke' if args.smoke else 'quick' if args.quick else 'full'} run, "
                f"{time.monotonic() - started:.0f} s; audit log and fsync floor in "
                f"{tempfile.gettempdir()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
