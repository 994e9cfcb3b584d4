"""``rlmbox serve`` (the daemon) and ``rlmbox token create|list|revoke``.

``token`` works on the SQLite file directly, so tokens can be issued and revoked whether
the daemon runs or not; a revoked token fails its next request.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlmbox.daemon.cpu_priority import run_daemon_before_sandboxes
from rlmbox.daemon.limits import DaemonLimits
from rlmbox.daemon.paths import default_socket, default_state_dir, private_dir
from rlmbox.daemon.store import Store
from rlmbox.errors import UsageError

if TYPE_CHECKING:
    from rlmbox.daemon.hosts import Hosts

#: under the state directory: one audit set (index and node logs) per tenant and policy
#: of a daemon on a Ray cluster
CLUSTER_AUDIT = "cluster-audit"

# DaemonLimits field -> (flag, type, help)
LIMIT_FLAGS: dict[str, tuple[str, type, str]] = {
    "sessions": ("--max-sessions", int,
                 "open sessions of all tenants, rlm_query children included; more is a 503"),
    "sessions_per_tenant": ("--max-sessions-per-tenant", int,
                            "open sessions of one tenant, children included; more is a 429"),
    "cells": ("--max-cells", int, "cells running and sandboxes starting at once; more is a 503"),
    "cells_per_tenant": ("--max-cells-per-tenant", int,
                         "the same for one tenant; more is a 429"),
    "requests_per_s_per_tenant": ("--requests-per-s-per-tenant", float,
                                  "one tenant's sustained request rate; above it, 429"),
    "request_burst_per_tenant": ("--request-burst-per-tenant", int,
                                 "requests one tenant may send at once above that rate"),
    "audit_bytes_per_tenant": ("--audit-bytes-per-tenant", int,
                               "bytes of one tenant's audit records and bodies; then 403"),
}


def register(subparsers: Any) -> None:
    """Add ``serve`` and ``token``."""
    serve = subparsers.add_parser("serve", help="run the daemon (HTTP API on a Unix socket)")
    serve.add_argument("--socket", type=Path, default=None,
                       help=f"Unix socket path (default {default_socket()})")
    serve.add_argument("--no-socket", action="store_true",
                       help="do not listen on a Unix socket (needs --tcp)")
    serve.add_argument("--tcp", metavar="HOST:PORT",
                       help="also listen on TCP, loopback only unless --tcp-public")
    serve.add_argument("--tcp-public", action="store_true",
                       help="allow a non-loopback --tcp address; put TLS in front of it "
                            "(a reverse proxy): the daemon speaks plain HTTP")
    serve.add_argument("--metrics-tcp", action="store_true",
                       help="serve GET /metrics on the TCP listener too, without a token "
                            "(it names tenants): for a scraper on a private network; the "
                            "Unix socket always serves it")
    serve.add_argument("--state", type=Path, default=None,
                       help=f"state directory (default {default_state_dir()})")
    serve.add_argument("--policy", action="append", default=[], metavar="[NAME=]POLICY",
                       help="a preset or policy file clients may choose by name; repeatable; "
                            "the first is the default (default: the 'default' preset)")
    serve.add_argument("--lm", metavar="SPEC",
                       help="LM provider for llm_query (default: an offline scripted answer)")
    serve.add_argument("--audit-dir", type=Path, default=None,
                       help="audit log directory (default STATE/audit)")
    serve.add_argument("--pool-size", type=int, default=0,
                       help="warm sandboxes per tenant and policy (default 0)")
    serve.add_argument("--ray", metavar="ADDRESS",
                       help="place every session on this Ray cluster (host:port of its GCS, "
                            "or 'auto'; the ray extra): tenants, tokens, policies and "
                            "limits as without it; a stream's root_text is refused (501) "
                            "there")
    serve.add_argument("--ray-namespace", default="rlmbox", metavar="NAME",
                       help="the Ray namespace of the daemon's node actors (default rlmbox)")
    serve.add_argument("--ray-slot-resource", default="rlmbox_slot", metavar="NAME",
                       help="the custom resource one session holds on a node (default "
                            "rlmbox_slot); another name keeps a pool of nodes apart")
    serve.add_argument("--threads", type=int, default=32, metavar="N",
                       help="server threads (default 32); must be above --max-cells")
    for name, (flag, kind, text) in LIMIT_FLAGS.items():
        default = getattr(DaemonLimits(), name)
        serve.add_argument(flag, dest=f"limit_{name}", type=kind, default=default,
                           metavar="N", help=f"{text} (default {default})")
    serve.set_defaults(handler=_serve)

    token = subparsers.add_parser("token", help="create, list and revoke API tokens")
    sub = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    create = sub.add_parser("create", help="a new token for a tenant (shown once)")
    create.add_argument("--tenant", required=True)
    listing = sub.add_parser("list", help="every token: id, tenant, created, revoked")
    revoke = sub.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("id")
    for parser, handler in ((create, _token_create), (listing, _token_list),
                            (revoke, _token_revoke)):
        parser.add_argument("--state", type=Path, default=None,
                            help=f"state directory (default {default_state_dir()})")
        parser.set_defaults(handler=handler)


def _store(args: argparse.Namespace, *, create: bool = False) -> Store:
    """The daemon's state; only ``token create`` may start a new state directory (a
    mistyped ``--state`` for list or revoke is an error, not an empty new directory)."""
    state = args.state or default_state_dir()
    if not create and not state.is_dir():
        raise UsageError(f"no daemon state at {state}: check --state (a daemon or "
                         "`rlmbox token create` makes it)")
    return Store(private_dir(state))


def _token_create(args: argparse.Namespace) -> int:
    store = _store(args, create=True)
    try:
        row, secret = store.create_token(args.tenant)
    finally:
        store.close()
    print(secret)
    print(f"token {row.id} for tenant {row.tenant!r}: shown once, store it now",
          file=sys.stderr)
    return 0


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return dt.datetime.fromtimestamp(stamp, dt.UTC).isoformat(timespec="seconds")


def _token_list(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        rows = store.tokens()
    finally:
        store.close()
    print(f"{'ID':<16} {'TENANT':<24} {'CREATED':<26} REVOKED")
    for row in rows:
        print(f"{row.id:<16} {row.tenant:<24} {_when(row.created):<26} {_when(row.revoked)}")
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        revoked = store.revoke_token(args.id)
    finally:
        store.close()
    if not revoked:
        print(f"rlmbox: no active token {args.id!r}", file=sys.stderr)
        return 1
    print(f"revoked {args.id}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from rlmbox.daemon.lifecycle import (  # noqa: PLC0415 - aiohttp: the daemon extra
        Daemon,
        DaemonConfig,
        load_policies,
    )
    from rlmbox.lm.spec import provider_from_spec  # noqa: PLC0415 - serve only

    logging.basicConfig(level=logging.INFO, format="rlmbox: %(message)s")
    if args.no_socket and not args.tcp:
        print("rlmbox: error: --no-socket needs --tcp", file=sys.stderr)
        return 2
    state_dir = args.state or default_state_dir()
    config = DaemonConfig(
        state_dir=state_dir,
        socket=None if args.no_socket else (args.socket or default_socket()),
        tcp=args.tcp, tcp_public=args.tcp_public, metrics_tcp=args.metrics_tcp,
        policies=load_policies(args.policy),
        lm=provider_from_spec(args.lm) if args.lm else None, audit_dir=args.audit_dir,
        pool_size=args.pool_size, threads=args.threads,
        limits=DaemonLimits(**{name: getattr(args, f"limit_{name}") for name in LIMIT_FLAGS}),
        hosts=_cluster_hosts(args, state_dir) if args.ray else None)
    run_daemon_before_sandboxes()
    return asyncio.run(_run(Daemon(config)))


def _cluster_hosts(args: argparse.Namespace, state_dir: Path) -> Callable[[], Hosts]:
    """``--ray``: the daemon's sessions on the cluster. Each node builds the LM provider
    from the same spec, with the key from its own environment."""
    try:
        from rlmbox.cluster.daemon_host import ClusterHosts  # noqa: PLC0415 - the ray extra
    except ImportError as exc:
        raise UsageError(f"--ray needs the ray extra (pip install 'rlmbox[ray]'): {exc}") \
            from exc
    from rlmbox.daemon.lifecycle import OFFLINE_HINT  # noqa: PLC0415 - aiohttp: the daemon extra
    from rlmbox.lm.unconfigured import UnconfiguredLM  # noqa: PLC0415 - serve only

    lm = args.lm or functools.partial(UnconfiguredLM, OFFLINE_HINT)
    hosts: Callable[[], Hosts] = functools.partial(
        ClusterHosts, args.ray, namespace=args.ray_namespace, lm=lm, pool_size=args.pool_size,
        slot_resource=args.ray_slot_resource, audit_root=state_dir / CLUSTER_AUDIT)
    return hosts


async def _run(daemon: Any) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await daemon.start()
    # again: joining a Ray cluster (--ray) installs Ray's own SIGTERM handler, which
    # exits at once, leaving sessions open and the cluster's audit index unsealed
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        if daemon.reconciled and daemon.reconciled.lost:
            print(f"rlmbox: marked {len(daemon.reconciled.lost)} session(s) of a previous "
                  "run lost", file=sys.stderr, flush=True)
        if daemon.socket_path is not None:
            print(f"rlmbox: listening on unix:{daemon.socket_path}", flush=True)
        if daemon.tcp_address is not None:
            host, port = daemon.tcp_address
            print(f"rlmbox: listening on http://{host}:{port}", flush=True)
        print(f"rlmbox: state in {daemon.config.state_dir}, audit log in "
              f"{daemon.audit_dir}; policies: {', '.join(daemon.config.policies)}", flush=True)
        await stop.wait()
        print("rlmbox: shutting down", flush=True)
    finally:
        await daemon.stop()
    print("rlmbox: stopped", flush=True)
    return 0
