"""The asyncio client makes the same calls and raises the same exceptions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from rlmbox.daemon.client import AsyncClient
from rlmbox.daemon.limits import DaemonLimits
from rlmbox.errors import DaemonError, SessionClosed

from .conftest import RunningDaemon


def test_async_client_runs_cells_concurrently_across_sessions(
        start_daemon: Callable[..., RunningDaemon]) -> None:
    # three cells at once: above the default per-tenant cap on a two-core machine
    daemon = start_daemon(limits=DaemonLimits(cells_per_tenant=3))
    token = daemon.token("alice")

    async def scenario() -> list[str]:
        async with AsyncClient(socket=daemon.socket, token=token) as client:
            assert (await client.health())["status"] == "ok"
            infos = await asyncio.gather(*(client.create_session(context=f"doc {n}")
                                           for n in range(3)))
            results = await asyncio.gather(*(client.exec(i["id"], "print(context)")
                                             for i in infos))
            listed = {s["id"] for s in await client.sessions()}
            assert listed == {i["id"] for i in infos}
            events, _ = await client.audit(session=infos[0]["id"])
            assert events
            for info in infos:
                await client.close_session(info["id"])
            assert (await client.session(infos[0]["id"]))["state"] == "closed"
            with pytest.raises(SessionClosed):
                await client.exec(infos[0]["id"], "print(1)")
            return [r.stdout for r in results]

    assert asyncio.run(scenario()) == ["doc 0\n", "doc 1\n", "doc 2\n"]


def test_async_client_maps_daemon_errors(daemon: RunningDaemon) -> None:
    async def scenario() -> DaemonError:
        async with AsyncClient(socket=daemon.socket, token="rbx.t-x.y") as client:  # noqa: S106 - bad on purpose
            with pytest.raises(DaemonError) as info:
                await client.sessions()
            return info.value

    error = asyncio.run(scenario())
    assert error.status == 401
    assert error.type == "Unauthorized"


def test_a_client_needs_exactly_one_address() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        AsyncClient(token="t")  # noqa: S106 - never sent
