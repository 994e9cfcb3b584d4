"""Files in and out of a daemon session: PUT/GET /v1/sessions/{id}/files, the clients.

The same checks as the embedded API (tests/security/test_session_files.py) through the
HTTP routes: round trip, listing, another tenant's session is 404, bad input is a 4xx."""

from __future__ import annotations

import asyncio
import os

import httpx
import pytest

from rlmbox.daemon.client import AsyncClient
from rlmbox.errors import DaemonError, FileTransferRefused

from .conftest import RunningDaemon


def test_round_trip_listing_and_model_code_sees_the_file(daemon: RunningDaemon) -> None:
    blob = os.urandom(3 * 1024 * 1024)
    with daemon.client("alice") as client:
        sid = client.create_session()["id"]
        client.write_file(sid, "/tmp/in.bin", blob)
        client.write_file(sid, "/tmp/note.txt", "héllo")
        r = client.exec(sid, "print(len(open('/tmp/in.bin','rb').read()))\n"
                             "open('/tmp/out.txt','w').write('from the model')")
        assert r.stdout == f"{len(blob)}\n", r.error
        assert client.read_file(sid, "/tmp/in.bin") == blob
        assert client.read_file(sid, "/tmp/out.txt") == b"from the model"
        entries = {e["name"]: e for e in client.list_files(sid, "/tmp")}
        assert entries["note.txt"] == {"name": "note.txt", "size": 6, "kind": "file"}
        client.close_session(sid)


def test_async_client_round_trip(daemon: RunningDaemon) -> None:
    async def run() -> bytes:
        async with AsyncClient(socket=daemon.socket, token=daemon.token("alice")) as client:
            sid = (await client.create_session())["id"]
            await client.write_file(sid, "/tmp/a", b"\x00\xff")
            assert [e["name"] for e in await client.list_files(sid, "/tmp")] == ["a"]
            data = await client.read_file(sid, "/tmp/a")
            await client.close_session(sid)
            return data
    assert asyncio.run(run()) == b"\x00\xff"


def test_another_tenants_session_is_404(daemon: RunningDaemon) -> None:
    with daemon.client("alice") as alice, daemon.client("bob") as bob:
        sid = alice.create_session()["id"]
        alice.write_file(sid, "/tmp/secret", b"alice's")
        for attempt in (lambda: bob.read_file(sid, "/tmp/secret"),
                        lambda: bob.write_file(sid, "/tmp/secret", b"bob's"),
                        lambda: bob.list_files(sid, "/tmp")):
            with pytest.raises(DaemonError) as info:
                attempt()
            assert info.value.status == 404
        assert alice.read_file(sid, "/tmp/secret") == b"alice's"
        alice.close_session(sid)


@pytest.mark.parametrize("query", ["", "?path=/tmp/a&dir=/tmp", "?name=/tmp/a",
                                   "?path=/etc/passwd", "?path=relative", "?dir=/etc",
                                   "?path=/tmp/../etc/passwd", "?path=/tmp/missing"])
def test_bad_input_is_a_4xx(daemon: RunningDaemon, query: str) -> None:
    with daemon.client("alice") as client:
        sid = client.create_session()["id"]
        transport = httpx.HTTPTransport(uds=str(daemon.socket))
        headers = {"Authorization": f"Bearer {daemon.token('alice')}"}
        with httpx.Client(transport=transport, base_url="http://rlmbox",
                          headers=headers) as raw:
            got = raw.get(f"/v1/sessions/{sid}/files{query}")
            put = raw.put(f"/v1/sessions/{sid}/files{query}", content=b"x")
        assert 400 <= got.status_code < 500, got.text
        assert 400 <= put.status_code < 500 or query == "?path=/tmp/missing", put.text
        client.close_session(sid)


def test_a_refused_path_raises_the_embedded_error(daemon: RunningDaemon) -> None:
    with daemon.client("alice") as client:
        sid = client.create_session()["id"]
        with pytest.raises(FileTransferRefused):
            client.write_file(sid, "/usr/x", b"x")
        client.close_session(sid)
