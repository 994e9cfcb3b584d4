"""``GET /v1/sessions/{id}/exec/stream``: output as it happens, over a real daemon."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from rlmbox.daemon import stream as stream_module
from rlmbox.daemon.app import MAX_BODY_BYTES
from rlmbox.daemon.stream import RELAY_LIMIT_CHARS
from rlmbox.errors import DaemonError, SessionClosed
from rlmbox.lm.scripted import ScriptedLM
from rlmbox.policies.model import load_policy

from .conftest import TEST_LIMITS, RunningDaemon, policy_file
from .daemon_process import REPO

DEADLINE_S = 120.0


def _limits(**overrides: Any) -> dict[str, Any]:
    base = load_policy("default").model_dump(mode="json")["limits"]
    return {**base, **TEST_LIMITS, **overrides}


def _start(start_daemon: Callable[..., RunningDaemon], tmp_path: Path,
           **overrides: Any) -> RunningDaemon:
    policy = load_policy(policy_file(tmp_path, limits=_limits(**overrides)))
    return start_daemon(policies={"test": policy})


async def _raw(daemon: RunningDaemon, path: str, token: str | None,
               messages: list[str | bytes]) -> tuple[list[dict[str, Any]], int | None]:
    """Opens the stream by hand, sends ``messages``, reads to the close."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    received = []
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(str(daemon.socket)),
                                     headers=headers) as http, \
            http.ws_connect(f"http://rlmbox{path}", max_msg_size=0) as ws:
        for message in messages:
            if isinstance(message, bytes):
                await ws.send_bytes(message)
            else:
                await ws.send_str(message)
        async for msg in ws:
            received.append(json.loads(msg.data))
        return received, ws.close_code


WAITING_CELL = """
import time
print('first piece', flush=True)
deadline = time.monotonic() + 90
while llm_query('released?') != 'go' and time.monotonic() < deadline:
    time.sleep(0.25)
print('released' if llm_query('released?') == 'go' else 'gave up')
"""


def test_output_arrives_before_the_result(start_daemon: Callable[..., RunningDaemon],
                                          tmp_path: Path) -> None:
    """The cell waits (via the LM, which the test gates) until the client has seen its
    first piece; it can only end "released" if that piece came while it ran."""
    seen = threading.Event()
    lm = ScriptedLM(lambda _prompt: "go" if seen.is_set() else "wait")
    policy = load_policy(policy_file(tmp_path, limits=_limits(cell_timeout_s=120)))
    running = start_daemon(policies={"test": policy}, lm=lm)
    pieces: list[tuple[str, str]] = []

    def on_output(stream: str, text: str) -> None:
        pieces.append((stream, text))
        if "first piece" in text:
            seen.set()

    with running.client("alice") as alice:
        sid = alice.create_session()["id"]
        r = alice.exec_stream(sid, WAITING_CELL, on_output=on_output)
    assert r.status == "ok", r.error
    assert r.stdout == "first piece\nreleased\n"
    assert "".join(text for _, text in pieces) == r.stdout


def test_streams_concatenate_to_the_result(daemon: RunningDaemon) -> None:
    got: dict[str, list[str]] = {"stdout": [], "stderr": []}
    with daemon.client("alice") as alice:
        sid = alice.create_session()["id"]
        r = alice.exec_stream(
            sid, "import sys\nfor i in range(30):\n    print('o', i, flush=True)\n"
                 "    print('e', i, file=sys.stderr, flush=True)\nFINAL(7)",
            on_output=lambda stream, text: got[stream].append(text))
        again = alice.exec(sid, "print(i)")   # the same REPL as POST exec
    assert r.status == "ok"
    assert r.answer == 7
    assert "".join(got["stdout"]) == r.stdout == "".join(f"o {i}\n" for i in range(30))
    assert "".join(got["stderr"]) == r.stderr == "".join(f"e {i}\n" for i in range(30))
    assert again.stdout == "29\n"


def test_the_async_client_streams_too(daemon: RunningDaemon) -> None:
    from rlmbox.daemon.client import AsyncClient

    async def run() -> tuple[str, list[str]]:
        pieces: list[str] = []
        async with AsyncClient(socket=daemon.socket, token=daemon.token("alice")) as c:
            sid = (await c.create_session())["id"]
            r = await c.exec_stream(sid, "print('hi')",
                                    on_output=lambda _s, text: pieces.append(text))
        return r.stdout, pieces

    stdout, pieces = asyncio.run(run())
    assert stdout == "hi\n"
    assert "".join(pieces) == stdout


def test_another_tenant_cannot_stream_on_a_session(daemon: RunningDaemon) -> None:
    with daemon.client("alice") as alice, daemon.client("bob") as bob:
        sid = alice.create_session()["id"]
        answers = []
        for target in (sid, "s-ffffffffffffffff"):
            with pytest.raises(DaemonError) as info:
                bob.exec_stream(target, "planted = 1", on_output=lambda _s, _t: None)
            answers.append((info.value.status, info.value.type))
        assert answers == [(404, "NotFound")] * 2
        r = alice.exec(sid, "print('planted' in globals())")
        events, _ = alice.audit(session=sid, limit=1000)
    assert r.stdout == "False\n"
    assert sum(e["event"] == "code.exec" for e in events) == 1   # only alice's cell


def test_a_closed_session_is_refused_before_the_upgrade(daemon: RunningDaemon) -> None:
    with daemon.client("alice") as alice:
        sid = alice.create_session()["id"]
        alice.close_session(sid)
        with pytest.raises(SessionClosed):
            alice.exec_stream(sid, "1", on_output=lambda _s, _t: None)


@pytest.mark.parametrize("token", [None, "nonsense"])
def test_no_valid_token_is_401(daemon: RunningDaemon, token: str | None) -> None:
    with daemon.client("alice") as alice:
        sid = alice.create_session()["id"]
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        asyncio.run(_raw(daemon, f"/v1/sessions/{sid}/exec/stream", token, ["{}"]))
    assert info.value.status == 401


def test_a_plain_get_is_a_json_400(daemon: RunningDaemon) -> None:
    token = daemon.token("alice")
    with daemon.client("alice") as alice:
        sid = alice.create_session()["id"]
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(daemon.socket)),
                      base_url="http://rlmbox") as http:
        response = http.get(f"/v1/sessions/{sid}/exec/stream",
                            headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "InvalidRequest"


@pytest.mark.parametrize("message", [
    "not json", "[1, 2]", '{"code": 1}', '{"code": "1", "bogus": true}',
    '{"code": "1", "timeout_s": "5"}', '{"code": "1", "timeout_s": -1}', b'{"code": "1"}',
    "", '{"code": "1", "timeout_s": NaN}',
])
def test_a_bad_request_message_is_an_error_and_a_policy_close(
        daemon: RunningDaemon, message: str | bytes) -> None:
    token = daemon.token("alice")
    with daemon.client("alice") as alice:
        sid = alice.create_session()["id"]
        received, code = asyncio.run(
            _raw(daemon, f"/v1/sessions/{sid}/exec/stream", token, [message]))
        assert code == aiohttp.WSCloseCode.POLICY_VIOLATION
        assert [m["type"] for m in received] == ["error"]
        assert received[0]["error"]["type"] == "InvalidRequest"
        assert received[0]["status"] == 400
        events, _ = alice.audit(session=sid, limit=1000)
        assert "code.exec" not in {e["event"] for e in events}   # nothing ran
        assert alice.exec(sid, "print('still serving')").stdout == "still serving\n"


def test_an_oversized_request_message_is_refused_unread(daemon: RunningDaemon) -> None:
    token = daemon.token("alice")
    with daemon.client("alice") as alice:
        sid = alice.create_session()["id"]
        huge = json.dumps({"code": "x" * (MAX_BODY_BYTES + 1)})
        try:
            received, code = asyncio.run(
                _raw(daemon, f"/v1/sessions/{sid}/exec/stream", token, [huge]))
        except ConnectionError:   # the daemon closed while the client was still sending
            received, code = [], aiohttp.WSCloseCode.MESSAGE_TOO_BIG
        assert code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
        assert received == []
        events, _ = alice.audit(session=sid, limit=1000)
        assert "code.exec" not in {e["event"] for e in events}
        assert alice.exec(sid, "print(2)").stdout == "2\n"


FLOOD_BYTES = 8 * 1024 * 1024


def test_a_slow_reader_gets_a_bounded_prefix_and_the_whole_result(
        start_daemon: Callable[..., RunningDaemon], tmp_path: Path) -> None:
    """The client reads nothing until the cell has ended; the daemon relays at most its
    bounded queue plus what the socket buffers hold, and the result is complete."""
    running = _start(start_daemon, tmp_path, output_bytes=2 * FLOOD_BYTES,
                     cell_timeout_s=100)
    token = running.token("alice")
    code = ("import sys\nfor _ in range(128):\n    sys.stdout.write('z' * 65536)\n"
            "    sys.stdout.flush()")
    with running.client("alice") as alice:
        sid = alice.create_session()["id"]

        def cell_ended() -> bool:
            events, _ = alice.audit(session=sid, limit=1000)
            return any(e["event"] == "cell.result" for e in events)

        async def slow() -> tuple[list[dict[str, Any]], int | None]:
            headers = {"Authorization": f"Bearer {token}"}
            connector = aiohttp.UnixConnector(str(running.socket))
            async with aiohttp.ClientSession(connector=connector, headers=headers) as http, \
                    http.ws_connect(f"http://rlmbox/v1/sessions/{sid}/exec/stream",
                                    max_msg_size=0) as ws:
                await ws.send_str(json.dumps({"code": code}))
                deadline = time.monotonic() + DEADLINE_S
                while not await asyncio.to_thread(cell_ended):
                    assert time.monotonic() < deadline, "the cell never ended"
                    await asyncio.sleep(0.2)
                received = [json.loads(msg.data) async for msg in ws]
                return received, ws.close_code

        received, close = asyncio.run(slow())
    outputs = [m for m in received if m["type"] == "output"]
    result = received[-1]
    assert close == aiohttp.WSCloseCode.OK
    assert result["type"] == "result"
    assert result["stdout"] == "z" * FLOOD_BYTES   # the result holds everything
    streamed = "".join(m["data"] for m in outputs)
    assert result["stdout"].startswith(streamed)    # what was relayed is a prefix
    assert result["stream_dropped"] > 0
    # the relay's bound plus generous room for socket buffers, far below the flood
    assert len(streamed) <= RELAY_LIMIT_CHARS + 4 * 1024 * 1024 < FLOOD_BYTES


def test_a_client_that_leaves_does_not_stop_the_cell(daemon: RunningDaemon) -> None:
    token = daemon.token("alice")
    code = "import time\nprint('started', flush=True)\ntime.sleep(1)\nleft_alone = 'done'"
    with daemon.client("alice") as alice:
        sid = alice.create_session()["id"]

        async def leave_early() -> None:
            connector = aiohttp.UnixConnector(str(daemon.socket))
            async with aiohttp.ClientSession(
                    connector=connector, headers={"Authorization": f"Bearer {token}"},
            ) as http, http.ws_connect(f"http://rlmbox/v1/sessions/{sid}/exec/stream") as ws:
                await ws.send_str(json.dumps({"code": code}))
                first = await ws.receive(timeout=DEADLINE_S)
                assert json.loads(first.data)["type"] == "output"

        asyncio.run(leave_early())
        # POST exec queues behind the streamed cell on the session's lock, so it sees it
        assert alice.exec(sid, "print(left_alone)").stdout == "done\n"
        events, _ = alice.audit(session=sid, limit=1000)
    assert sum(e["event"] == "cell.result" for e in events) == 2


def test_exec_stream_without_aiohttp_names_the_extra() -> None:
    code = ("import sys\nsys.modules['aiohttp'] = None\n"
            "from rlmbox.errors import DaemonError\n"
            "from rlmbox.daemon.client import Client\n"
            "c = Client(socket='/nonexistent.sock', token='t')\n"
            "try:\n    c.exec_stream('s-1', '1', on_output=print)\n"
            "except DaemonError as e:\n    print(e.type, e)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=120, check=False,
                            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("MissingDependency ")
    assert "rlmbox[daemon]" in result.stdout


def test_no_request_message_in_time_is_an_error_and_a_policy_close(
        daemon: RunningDaemon, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that upgrades and then says nothing does not hold the stream open."""
    monkeypatch.setattr(stream_module, "FIRST_MESSAGE_TIMEOUT_S", 1.0)
    token = daemon.token("alice")
    with daemon.client("alice") as alice:
        sid = alice.create_session()["id"]
        received, code = asyncio.run(
            _raw(daemon, f"/v1/sessions/{sid}/exec/stream", token, []))
        assert code == aiohttp.WSCloseCode.POLICY_VIOLATION
        assert [m["type"] for m in received] == ["error"]
        assert received[0]["status"] == 400
        assert "no request message within 1 s" in received[0]["error"]["message"]
        assert alice.exec(sid, "print('still serving')").stdout == "still serving\n"


def test_an_error_running_the_cell_is_an_error_and_an_internal_close(
        daemon: RunningDaemon) -> None:
    """The audit log fails after the upgrade: the cell is refused (fail closed) with the
    same AuditWriteError a POST exec gets, and the close code says the server failed."""
    token = daemon.token("alice")
    with daemon.client("alice") as alice:
        sid = alice.create_session()["id"]
        daemon.daemon._audit.close()   # the log is gone: nothing more can be recorded
        received, code = asyncio.run(_raw(
            daemon, f"/v1/sessions/{sid}/exec/stream", token,
            [json.dumps({"code": "print('must not run')"})]))
    assert code == aiohttp.WSCloseCode.INTERNAL_ERROR
    assert [m["type"] for m in received] == ["error"]
    assert received[0]["status"] == 503
    assert received[0]["error"]["type"] == "AuditWriteError"
