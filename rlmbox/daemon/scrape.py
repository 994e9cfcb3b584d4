"""GET /metrics: the engine's Prometheus metrics, for the operator only.

On the Unix socket (mode 0600: only the daemon's own user connects) it needs no token.
On the TCP listener it exists only when the operator starts the daemon with
``--metrics-tcp``, and is then served without a token to whoever reaches the port: the
values name tenants (and nothing else of theirs), so that port belongs on a private
network. A tenant's bearer token never unlocks it: one tenant must not count another's
sessions.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

METRICS_PATH = "/metrics"


@dataclass(frozen=True)
class Scrape:
    """The registry the daemon's runtimes publish on, and whether TCP may read it."""

    registry: CollectorRegistry
    on_tcp: bool = False


def over_unix_socket(request: web.Request) -> bool:
    """Whether the request came in on the daemon's Unix socket."""
    sock = request.transport.get_extra_info("socket") if request.transport else None
    return sock is not None and sock.family == socket.AF_UNIX


def scrape_allowed(request: web.Request, scrape: Scrape) -> bool:
    return scrape.on_tcp or over_unix_socket(request)


def metrics_response(scrape: Scrape) -> web.Response:
    response = web.Response(body=generate_latest(scrape.registry))
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response
