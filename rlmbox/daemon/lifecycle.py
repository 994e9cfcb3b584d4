"""The daemon's lifecycle: lock the state, open the log, reconcile, listen; and stop.

Order matters at start: the state lock first (one daemon per state directory), then the
audit log, then reconciliation of what a previous run left open, and only then the
sockets, so no request is served before the books are straight. Stopping closes every
session (killing its sandbox), syncs and closes the log, and removes the socket file.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry

from rlmbox.audit.log import AuditLog
from rlmbox.daemon.admission import Admission
from rlmbox.daemon.app import MAX_REQUEST_LINE_BYTES, Pools, build_app
from rlmbox.daemon.audit_index import AuditIndex
from rlmbox.daemon.engine import Engine
from rlmbox.daemon.hosts import Hosts
from rlmbox.daemon.limits import DaemonLimits
from rlmbox.daemon.local_host import LocalHosts
from rlmbox.daemon.paths import bind_tcp, bind_unix, parse_tcp, private_dir
from rlmbox.daemon.reconcile import Reconciled, reconcile
from rlmbox.daemon.refusals import RefusalRecorder
from rlmbox.daemon.scrape import Scrape
from rlmbox.daemon.store import DaemonLock, Store
from rlmbox.errors import DaemonError, RlmboxError
from rlmbox.lm.base import LMProvider
from rlmbox.lm.unconfigured import UnconfiguredLM
from rlmbox.observe.metrics import families_for
from rlmbox.policies.model import Policy, load_policy

log = logging.getLogger("rlmbox.daemon")
OFFLINE_HINT = "start the daemon with --lm SPEC"


def rlmbox_version() -> str:
    try:
        return version("rlmbox")
    except PackageNotFoundError:
        return "0+unknown"


def load_policies(specs: list[str]) -> dict[str, Policy]:
    """``NAME=PRESET_OR_PATH`` or ``PRESET_OR_PATH`` (named by the preset, else by the
    policy's own name); the first is the default. Empty: just the ``default`` preset."""
    policies: dict[str, Policy] = {}
    for spec in specs or ["default"]:
        name, sep, source = spec.partition("=")
        if not sep:
            source = spec
        is_path = "/" in source or source.endswith((".yaml", ".yml"))
        policy = load_policy(Path(source) if is_path else source)
        key = name if sep else (policy.name if is_path else source)
        if not key or key in policies:
            raise DaemonError(f"--policy {spec!r}: the name {key!r} is empty or given twice",
                              type="Config")
        policies[key] = policy
    return policies


@dataclass
class DaemonConfig:
    state_dir: Path
    socket: Path | None
    tcp: str | None = None
    tcp_public: bool = False
    metrics_tcp: bool = False   # GET /metrics on the TCP listener too (scrape.py)
    policies: dict[str, Policy] = field(default_factory=dict)
    lm: LMProvider | None = None
    audit_dir: Path | None = None
    pool_size: int = 0
    threads: int = 32
    reap_every_s: float = 30.0
    index_every_s: float = 1.0
    limits: DaemonLimits = field(default_factory=DaemonLimits)
    #: where sessions run when not on this machine (``rlmbox serve --ray``): called once
    #: the books are straight; ``lm`` and ``pool_size`` are then the factory's business
    hosts: Callable[[], Hosts] | None = None


class Daemon:
    """One running daemon; ``start`` and ``stop`` run on its event loop."""

    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        if config.tcp is not None:   # refuse a public bind before touching anything
            self._tcp = parse_tcp(config.tcp, public=config.tcp_public)
        config.limits.check_threads(config.threads)
        self.socket_path: Path | None = None
        self.tcp_address: tuple[str, int] | None = None
        self.reconciled: Reconciled | None = None
        self._runner: web.AppRunner | None = None
        self._engine: Engine | None = None
        self._sockets: list[socket.socket] = []

    @property
    def audit_dir(self) -> Path:
        return self.config.audit_dir or self.config.state_dir / "audit"

    async def start(self) -> None:
        cfg = self.config
        state = private_dir(cfg.state_dir)
        self._lock = DaemonLock(state)
        try:
            await self._start(state)
        except BaseException:
            await self.stop()
            raise

    async def _start(self, state: Path) -> None:
        cfg = self.config
        self._store = Store(state)
        self._audit = AuditLog(self.audit_dir)
        self.reconciled = reconcile(self._store, self._audit)
        policies = cfg.policies or load_policies([])
        self._pool = ThreadPoolExecutor(max_workers=cfg.threads,
                                        thread_name_prefix="rlmbox-daemon")
        self._parse_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rlmbox-parse")
        self._index = AuditIndex(self.audit_dir)
        admission = Admission(cfg.limits, self._tenant_audit_bytes)
        scrape = Scrape(CollectorRegistry(), on_tcp=cfg.metrics_tcp)
        families_for(scrape.registry)   # every family is scraped from the start, at zero
        hosts = cfg.hosts() if cfg.hosts is not None else LocalHosts(
            cfg.lm or UnconfiguredLM(OFFLINE_HINT), self._audit, cfg.pool_size,
            scrape.registry)
        self._engine = Engine(policies, hosts=hosts, audit=self._audit, store=self._store,
                              admission=admission)
        self._audit.append("daemon.start", policies={n: p.sha256 for n, p in policies.items()},
                           version=rlmbox_version(), lost=self.reconciled.lost,
                           limits=dataclasses.asdict(cfg.limits))
        self._audit.sync()
        await self._extend_index()   # built once here, then extended every index_every_s
        app = build_app(self._engine, self._store, self._index,
                        Pools(work=self._pool, parse=self._parse_pool),
                        RefusalRecorder(self._audit), rlmbox_version(), scrape)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                    shutdown_timeout=5.0,
                                    max_line_size=MAX_REQUEST_LINE_BYTES)
        await self._runner.setup()
        if cfg.socket is not None:
            self._sockets.append(bind_unix(cfg.socket))
            self.socket_path = cfg.socket
        if cfg.tcp is not None:
            tcp = bind_tcp(*self._tcp)
            self._sockets.append(tcp)
            self.tcp_address = tcp.getsockname()[:2]
        for sock in self._sockets:
            await web.SockSite(self._runner, sock).start()
        self._reaper = asyncio.create_task(self._reap_forever(), name="rlmbox-reaper")
        self._indexer = asyncio.create_task(self._index_forever(), name="rlmbox-indexer")

    def _tenant_audit_bytes(self, tenant: str) -> int:
        """The tenant's records and bodies in the daemon's log and, on a cluster, in
        its node logs (as last measured)."""
        engine = self._engine
        hosted = engine.hosted_audit_bytes(tenant) if engine is not None else 0
        return self._index.tenant_bytes(tenant) + hosted

    def _refresh_books(self) -> None:
        """The audit index, then what the tenants wrote outside the daemon's log."""
        self._index.refresh()
        if self._engine is not None:
            self._engine.measure_audit_bytes()

    async def _index_forever(self) -> None:
        """Keeps the audit index (and so each tenant's audit bytes) current."""
        while await self._extend_index():
            await asyncio.sleep(self.config.index_every_s)

    async def _extend_index(self) -> bool:
        """False once the log is found corrupt: cells still run (their events are
        written and ``rlmbox audit verify`` names the bad record), audit pages are 500."""
        try:
            await asyncio.get_running_loop().run_in_executor(self._pool, self._refresh_books)
        except RlmboxError as exc:
            log.error("the audit index stopped; GET /v1/audit answers 500: %s", exc)  # noqa: TRY400 - the message is the whole story
            return False
        return True

    async def _reap_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.config.reap_every_s)
            engine = self._engine
            if engine is None:
                return
            try:
                reaped = await loop.run_in_executor(self._pool, engine.reap)
            except Exception:   # a failed close must not end reaping for good
                log.exception("reaping expired sessions failed")
                continue
            if reaped:
                log.info("closed %d session(s) past their wall time", len(reaped))

    async def stop(self) -> None:
        """Stops listening, closes every session, syncs and closes the log; idempotent."""
        for name in ("_reaper", "_indexer"):
            task = getattr(self, name, None)
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                delattr(self, name)
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()
        if self._engine is not None:
            engine, self._engine = self._engine, None
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, engine.shutdown)
        for pool_name in ("_pool", "_parse_pool"):
            pool = getattr(self, pool_name, None)
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        try:
            self._close_audit()
        finally:
            if getattr(self, "_store", None) is not None:
                self._store.close()
                del self._store
            if self.socket_path is not None:
                with contextlib.suppress(FileNotFoundError):
                    self.socket_path.unlink()
                self.socket_path = None
            if getattr(self, "_lock", None) is not None:
                self._lock.release()
                del self._lock

    def _close_audit(self) -> None:
        audit = getattr(self, "_audit", None)
        if audit is None:
            return
        del self._audit
        try:
            audit.append("daemon.stop")
        except RlmboxError as exc:   # a failed log stays failed; the stop goes on
            log.warning("the audit log refused daemon.stop: %s", exc)
        try:
            audit.close()
        except RlmboxError:
            log.exception("closing the audit log failed")
