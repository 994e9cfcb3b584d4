"""Prometheus metrics of the engine, read off the audit stream (``prometheus-client``).

The metric families live once per registry (:func:`families_for`): every Runtime of a
daemon adds to the same series. Each Runtime gets its own :class:`RuntimeMetrics`
observer, which remembers what a later record needs from an earlier one (a session's
backend and host functions) while the session is open. docs/observability.md lists every
metric with its meaning.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from rlmbox.observe import labels

CELL_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
SYNC_SECONDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                0.25, 0.5, 1, 2.5)


class PoolCensus(Protocol):
    """Warm sandboxes ready now, by backend (a Runtime's sandbox supply)."""

    def warm_by_backend(self) -> Mapping[str, int]: ...


class _WarmPools(Collector):
    """``rlmbox_warm_pool_size``: summed over every census watched, read at scrape time."""

    def __init__(self) -> None:
        self._censuses: weakref.WeakSet[Any] = weakref.WeakSet()

    def watch(self, census: PoolCensus) -> None:
        self._censuses.add(census)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("rlmbox_warm_pool_size",
                                   "Warm sandboxes ready to hand out, by backend",
                                   labels=["backend"])
        totals: dict[str, int] = {}
        for census in list(self._censuses):
            for backend, count in census.warm_by_backend().items():
                totals[backend] = totals.get(backend, 0) + count
        for backend, count in sorted(totals.items()):
            family.add_metric([backend], count)
        yield family


@dataclass
class MetricFamilies:
    """Every rlmbox metric, registered on one registry."""

    registry: CollectorRegistry
    sessions_created: Counter = field(init=False)
    sessions_active: Gauge = field(init=False)
    sessions_ended: Counter = field(init=False)
    sessions_refused: Counter = field(init=False)
    cells: Counter = field(init=False)
    cell_seconds: Histogram = field(init=False)
    host_calls: Counter = field(init=False)
    budget_refusals: Counter = field(init=False)
    lm_tokens: Counter = field(init=False)
    lm_cost: Counter = field(init=False)
    audit_appends: Counter = field(init=False)
    audit_sync_seconds: Histogram = field(init=False)
    audit_failures: Counter = field(init=False)
    warm_pool_misses: Counter = field(init=False)
    sandbox_kills: Counter = field(init=False)
    warm_pools: _WarmPools = field(init=False)

    def __post_init__(self) -> None:
        r = self.registry
        self.sessions_created = Counter(
            "rlmbox_sessions_created", "Sessions started (rlm_query children included)",
            ["tenant", "backend"], registry=r)
        self.sessions_active = Gauge(
            "rlmbox_sessions_active", "Sessions open now", ["tenant", "backend"], registry=r)
        self.sessions_ended = Counter(
            "rlmbox_sessions_ended", "Sessions ended, by how they ended",
            ["tenant", "backend", "status"], registry=r)
        self.sessions_refused = Counter(
            "rlmbox_sessions_refused",
            "Sessions refused at creation: the backend lacks a required isolation property",
            ["tenant", "backend"], registry=r)
        self.cells = Counter("rlmbox_cells", "Cells run, by result status",
                             ["tenant", "backend", "status"], registry=r)
        self.cell_seconds = Histogram(
            "rlmbox_cell_duration_seconds", "Host-measured wall time of a cell",
            ["backend"], buckets=CELL_SECONDS, registry=r)
        self.host_calls = Counter(
            "rlmbox_host_calls", "Host calls, by function, policy decision and outcome",
            ["tenant", "function", "decision", "outcome"], registry=r)
        self.budget_refusals = Counter(
            "rlmbox_budget_reservations_refused",
            "Host calls the ledger refused, by function and the budget that ran out",
            ["tenant", "function", "budget"], registry=r)
        self.lm_tokens = Counter("rlmbox_lm_tokens", "LM tokens used, by model and direction",
                                 ["tenant", "model", "direction"], registry=r)
        self.lm_cost = Counter("rlmbox_lm_cost_usd", "LM cost in US dollars, by model",
                               ["tenant", "model"], registry=r)
        self.audit_appends = Counter("rlmbox_audit_appends", "Audit records appended",
                                     registry=r)
        self.audit_sync_seconds = Histogram(
            "rlmbox_audit_sync_seconds",
            "Time a sync of the audit log took (write, flush and fsync)",
            buckets=SYNC_SECONDS, registry=r)
        self.audit_failures = Counter(
            "rlmbox_audit_write_failures", "Appends or syncs the audit log refused",
            registry=r)
        self.warm_pool_misses = Counter(
            "rlmbox_warm_pool_misses",
            "Sessions of a pooled runtime that had to start a cold sandbox", ["backend"],
            registry=r)
        self.sandbox_kills = Counter("rlmbox_sandbox_kills", "Sandboxes killed, by reason",
                                     ["backend", "reason"], registry=r)
        self.warm_pools = _WarmPools()
        r.register(self.warm_pools)


_FAMILIES: weakref.WeakKeyDictionary[CollectorRegistry, MetricFamilies] = (
    weakref.WeakKeyDictionary())
_FAMILIES_LOCK = threading.Lock()


def families_for(registry: CollectorRegistry) -> MetricFamilies:
    """The metric families on ``registry``, registered on first use: a registry takes
    each name once, and every Runtime sharing it must add to the same series."""
    with _FAMILIES_LOCK:
        families = _FAMILIES.get(registry)
        if families is None:
            families = MetricFamilies(registry)
            _FAMILIES[registry] = families
        return families


@dataclass(frozen=True)
class _Open:
    tenant: str
    backend: str
    functions: frozenset[str]


class RuntimeMetrics:
    """One Runtime's observer: turns its audit records into metric updates."""

    def __init__(self, registry: CollectorRegistry, *, pooled: bool,
                 census: PoolCensus | None = None) -> None:
        self._m = families_for(registry)
        self._pooled = pooled
        self._open: dict[str, _Open] = {}
        self._lock = threading.Lock()
        if census is not None:
            self._m.warm_pools.watch(census)

    def audit_synced(self, seconds: float) -> None:
        self._m.audit_sync_seconds.observe(seconds)

    def audit_failed(self) -> None:
        self._m.audit_failures.inc()

    def record(self, record: Mapping[str, Any]) -> None:
        self._m.audit_appends.inc()
        event = record.get("event")
        if event == "session.create":
            self._created(record)
        elif event == "session.end":
            self._ended(record)
        elif event == "session.refused":
            self._m.sessions_refused.labels(labels.tenant(record),
                                            labels.text(record, "backend")).inc()
        elif event == "cell.result":
            self._cell(record)
        elif event == "host.call":
            self._host_call(record)
        if event == "limit.exceeded" and "budget" in record:
            self._m.budget_refusals.labels(labels.tenant(record), self._function(record),
                                           labels.text(record, "budget")).inc()
        if labels.is_kill(record):
            self._m.sandbox_kills.labels(self._session(record).backend,
                                         labels.kill_reason(labels.text(record, "reason"))
                                         ).inc()

    def _session(self, record: Mapping[str, Any]) -> _Open:
        with self._lock:
            found = self._open.get(labels.text(record, "session"))
        return found or _Open(labels.tenant(record), "", frozenset())

    def _function(self, record: Mapping[str, Any]) -> str:
        """The host function's name when the session has it (or it is the RLM loop's root
        model); a name model code made up is ``unknown``."""
        name = labels.text(record, "function")
        if name in self._session(record).functions or record.get("caller") == "rlm_loop":
            return name
        return labels.UNKNOWN_FUNCTION

    def _created(self, record: Mapping[str, Any]) -> None:
        sandbox = record.get("sandbox")
        sandbox = sandbox if isinstance(sandbox, Mapping) else {}
        backend = sandbox.get("backend") if isinstance(sandbox.get("backend"), str) else ""
        functions = record.get("functions")
        opened = _Open(labels.tenant(record), str(backend),
                       frozenset(f for f in functions if isinstance(f, str))
                       if isinstance(functions, list) else frozenset())
        with self._lock:
            self._open[labels.text(record, "session")] = opened
        self._m.sessions_created.labels(opened.tenant, opened.backend).inc()
        self._m.sessions_active.labels(opened.tenant, opened.backend).inc()
        if self._pooled and sandbox.get("warm") is not True:
            self._m.warm_pool_misses.labels(opened.backend).inc()

    def _ended(self, record: Mapping[str, Any]) -> None:
        with self._lock:
            opened = self._open.pop(labels.text(record, "session"), None)
        if opened is None:
            return   # a session this runtime did not see start: nothing to balance
        self._m.sessions_active.labels(opened.tenant, opened.backend).dec()
        self._m.sessions_ended.labels(opened.tenant, opened.backend,
                                      labels.end_status(record)).inc()

    def _cell(self, record: Mapping[str, Any]) -> None:
        opened = self._session(record)
        self._m.cells.labels(opened.tenant, opened.backend,
                             labels.text(record, "status")).inc()
        duration = record.get("duration_s")
        if isinstance(duration, int | float) and not isinstance(duration, bool):
            self._m.cell_seconds.labels(opened.backend).observe(duration)

    def _host_call(self, record: Mapping[str, Any]) -> None:
        tenant = labels.tenant(record)
        self._m.host_calls.labels(tenant, self._function(record),
                                  labels.text(record, "decision") or "none",
                                  labels.text(record, "outcome")).inc()
        model = labels.text(record, "model")
        if not model:
            return
        for direction, key in (("input", "tokens_in"), ("output", "tokens_out")):
            count = record.get(key)
            if isinstance(count, int) and not isinstance(count, bool) and count > 0:
                self._m.lm_tokens.labels(tenant, model, direction).inc(count)
        cost = record.get("cost_usd")
        if isinstance(cost, int | float) and not isinstance(cost, bool) and cost > 0:
            self._m.lm_cost.labels(tenant, model).inc(cost)
