"""Runtime(metrics=registry): after a known workload on real sandboxes, every family
holds exactly the counts the workload implies (docs/observability.md)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from rlmbox.audit.log import AuditLog
from rlmbox.errors import AuditWriteError
from rlmbox.runtime.observe import ObservedAudit
from rlmbox.runtime.runtime import Runtime
from tests.conftest import write_policy
from tests.observe.priced_lm import COST_USD, TOKENS_IN, TOKENS_OUT, PricedLM

RULES = [
    {"id": "permit-lm", "effect": "permit", "function": "llm_query"},
    {"id": "no-big-model", "effect": "forbid", "function": "llm_query",
     "when": {"model": "big-model"}},
]
TRY_BIG = """
try:
    llm_query('b', model='big-model')
except PolicyDenied:
    print('denied')
"""
TWO_MORE = """
print(llm_query('c'))
try:
    llm_query('d')
except BudgetExceeded:
    print('over budget')
"""
IGNORE_INTERRUPTS = """
import time
while True:
    try:
        time.sleep(10)
    except KeyboardInterrupt:
        pass
"""

RuntimeFactory = Callable[..., Runtime]


@pytest.fixture
def metered(tmp_path: Path) -> Iterator[RuntimeFactory]:
    made: list[Runtime] = []

    def make(registry: CollectorRegistry, pool_size: int = 0, **sections: Any) -> Runtime:
        rt = Runtime(write_policy(tmp_path, **sections), lm=PricedLM(),
                     audit_dir=tmp_path / f"audit-{len(made)}", pool_size=pool_size,
                     metrics=registry)
        made.append(rt)
        return rt

    yield make
    for rt in made:
        rt.close()


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def test_a_known_workload_yields_its_counts(metered: RuntimeFactory) -> None:
    """Two runtimes share one registry: a session of five cells (host calls permitted,
    denied and over budget, an error) and a session whose cell ignores its interrupt."""
    registry = CollectorRegistry()
    rt = metered(registry, rules=RULES,
                 budgets={"functions": {"llm_query": {"calls": 2}}})
    with rt.session() as s:
        assert s.exec("print(llm_query('a'))").stdout == "priced answer\n"
        assert s.exec(TRY_BIG).stdout == "denied\n"
        assert s.exec(TWO_MORE).stdout == "priced answer\nover budget\n"
        assert s.exec("1/0").status == "error"
        assert value(registry, "rlmbox_sessions_active", tenant="", backend="process") == 1
    killer = metered(registry, limits={"cell_timeout_s": 1, "interrupt_grace_s": 0.5})
    with killer.session() as s:
        assert s.exec(IGNORE_INTERRUPTS).status == "killed"

    base = {"tenant": "", "backend": "process"}
    assert value(registry, "rlmbox_sessions_created_total", **base) == 2
    assert value(registry, "rlmbox_sessions_active", **base) == 0
    assert value(registry, "rlmbox_sessions_ended_total", **base, status="closed") == 1
    assert value(registry, "rlmbox_sessions_ended_total", **base, status="killed") == 1
    assert value(registry, "rlmbox_cells_total", **base, status="ok") == 3
    assert value(registry, "rlmbox_cells_total", **base, status="error") == 1
    assert value(registry, "rlmbox_cells_total", **base, status="killed") == 1
    assert value(registry, "rlmbox_cell_duration_seconds_count", backend="process") == 5
    assert value(registry, "rlmbox_cell_duration_seconds_sum", backend="process") >= 1.0
    calls = {"tenant": "", "function": "llm_query"}
    assert value(registry, "rlmbox_host_calls_total", **calls, decision="permit",
                 outcome="ok") == 2
    assert value(registry, "rlmbox_host_calls_total", **calls, decision="deny",
                 outcome="denied") == 1
    assert value(registry, "rlmbox_host_calls_total", **calls, decision="permit",
                 outcome="budget_exceeded") == 1
    assert value(registry, "rlmbox_budget_reservations_refused_total", **calls,
                 budget="llm_query.calls") == 1
    assert value(registry, "rlmbox_lm_tokens_total", tenant="", model="m-test",
                 direction="input") == 2 * TOKENS_IN
    assert value(registry, "rlmbox_lm_tokens_total", tenant="", model="m-test",
                 direction="output") == 2 * TOKENS_OUT
    assert value(registry, "rlmbox_lm_cost_usd_total", tenant="",
                 model="m-test") == pytest.approx(2 * COST_USD)
    assert value(registry, "rlmbox_sandbox_kills_total", backend="process",
                 reason="timeout") == 1
    assert value(registry, "rlmbox_audit_appends_total") > 20
    assert value(registry, "rlmbox_audit_sync_seconds_count") >= 7   # one per cell at least
    assert value(registry, "rlmbox_audit_write_failures_total") == 0


def test_the_warm_pool_size_and_its_misses(metered: RuntimeFactory) -> None:
    """The first session finds the pool empty (a miss); once it refills, the gauge
    shows it and the next session is served warm (no new miss)."""
    registry = CollectorRegistry()
    rt = metered(registry, pool_size=1)
    with rt.session() as s:
        s.exec("pass")
    assert value(registry, "rlmbox_warm_pool_misses_total", backend="process") == 1
    pool = rt.pool()
    assert pool is not None
    assert pool.wait_full(30)
    assert value(registry, "rlmbox_warm_pool_size", backend="process") == 1
    with rt.session() as s:
        s.exec("pass")
    assert value(registry, "rlmbox_warm_pool_misses_total", backend="process") == 1


def test_a_failed_audit_write_is_counted(tmp_path: Path) -> None:
    """A log that refuses an append raises as before and counts one write failure."""
    registry = CollectorRegistry()
    from rlmbox.observe.metrics import RuntimeMetrics

    log = AuditLog(tmp_path)
    sink = ObservedAudit(log, [RuntimeMetrics(registry, pooled=False)])
    sink.append("probe")
    log.close()
    with pytest.raises(AuditWriteError):
        sink.append("after close")
    assert value(registry, "rlmbox_audit_appends_total") == 1
    assert value(registry, "rlmbox_audit_write_failures_total") == 1


def test_import_rlmbox_loads_no_metrics_or_tracing_package() -> None:
    """The extras are imported only by a Runtime that is given a registry or provider."""
    probe = ("import sys, rlmbox, rlmbox.runtime.runtime\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in "
             "('prometheus_client', 'opentelemetry')))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"


class _Broken:
    """An observer whose every method raises."""

    def __init__(self) -> None:
        self.calls = 0

    def record(self, record: Any) -> None:
        self.calls += 1
        raise RuntimeError("observer bug")

    def audit_synced(self, seconds: float) -> None:
        self.calls += 1
        raise RuntimeError("observer bug")

    def audit_failed(self) -> None:
        self.calls += 1
        raise RuntimeError("observer bug")


def test_an_observer_that_raises_is_switched_off_and_the_log_goes_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    broken = _Broken()
    log = AuditLog(tmp_path)
    sink = ObservedAudit(log, [broken])
    first = sink.append("probe")
    second = sink.append("probe")
    sink.sync()
    log.close()
    assert (first["seq"], second["seq"]) == (1, 2)
    assert broken.calls == 1
    assert "switched off" in caplog.text
