"""Hostile review s15a, change 1 (8e19675): the daemon's request line cap is 64 KiB and a
file-transfer error cuts a long path.

The promise (docs/daemon.md, "Errors are ..."): errors are ``{"error": {"type",
"message"}}`` with one known exception, a request line over ``MAX_REQUEST_LINE_BYTES``;
bad input is always a 4xx, never a 5xx, and the daemon keeps serving."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from rlmbox.daemon.app import MAX_REQUEST_LINE_BYTES
from rlmbox.errors import FileTransferRefused
from rlmbox.runtime.session_files import SHOWN_PATH_CHARS

from .conftest import RunningDaemon


def _raw(sock_path: Path, request: bytes, timeout: float = 30.0) -> tuple[int, dict[str, str],
                                                                          bytes]:
    """One raw HTTP/1.1 request on the daemon's Unix socket: (status, headers, body)."""
    with socket.socket(socket.AF_UNIX) as raw:
        raw.settimeout(timeout)
        raw.connect(str(sock_path))
        raw.sendall(request)
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def _get(path: str, token: str, *extra: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: rlmbox", f"Authorization: Bearer {token}",
             "Connection: close", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _json_error(status: int, headers: dict[str, str], body: bytes) -> str:
    """The error's type, asserting the documented shape."""
    assert 400 <= status < 500, (status, body[:300])
    assert headers.get("content-type", "").startswith("application/json"), (
        status, headers, body[:300])
    return str(json.loads(body)["error"]["type"])


# -- the request line, just under the cap ---------------------------------------------------


def test_a_request_line_one_byte_under_the_cap_is_rlmbox_own_json_400(
        daemon: RunningDaemon, http: httpx.Client) -> None:
    """A line of ``MAX_REQUEST_LINE_BYTES - 1`` bytes (CRLF excluded) reaches rlmbox, which
    answers with its JSON error; the daemon serves on."""
    prefix, suffix = "GET /v1/sessions?before=", " HTTP/1.1"
    pad = MAX_REQUEST_LINE_BYTES - 1 - len(prefix) - len(suffix)
    line = f"{prefix}{'s' * pad}{suffix}"
    assert len(line) == MAX_REQUEST_LINE_BYTES - 1
    request = (line + "\r\n" + "\r\n".join(
        ["Host: rlmbox", f"Authorization: Bearer {daemon.token('alice')}",
         "Connection: close"]) + "\r\n\r\n").encode()
    status, headers, body = _raw(daemon.socket, request)
    assert _json_error(status, headers, body) == "InvalidRequest"
    assert http.get("/v1/sessions").status_code == 200


def test_a_near_cap_path_segment_is_a_json_404(daemon: RunningDaemon) -> None:
    """A session id of ~60 KiB in the URL's path (not its query) reaches rlmbox: a JSON
    404 (the answer a missing session gets), not a 5xx."""
    status, headers, body = _raw(daemon.socket, _get(
        "/v1/sessions/" + "a" * (MAX_REQUEST_LINE_BYTES - 200), daemon.token("alice")))
    assert _json_error(status, headers, body) == "NotFound"


# -- headers: the other limits of the same parser ------------------------------------------


# A header over 8,190 bytes (a bearer token too) or over 128 headers is the parser's own
# plain-text 400, like a request line past the cap: docs/daemon.md names these limits as the
# exception to JSON errors (review s15a found them unnamed); what must hold is below.


def test_headers_past_the_parsers_caps_are_still_4xx_and_the_daemon_serves_on(
        daemon: RunningDaemon, http: httpx.Client) -> None:
    """Whatever their shape, over-long and too many headers are a 4xx, never a 5xx or a
    dropped connection, and the next request is served."""
    token = daemon.token("alice")
    for request in (_get("/v1/sessions", token, "X-Pad: " + "p" * 9000),
                    _get("/v1/sessions", "t" * 9000),
                    _get("/v1/sessions", token, *[f"X-H{i}: v" for i in range(200)]),
                    _get("/v1/sessions", token, "X-Pad: " + "p" * (MAX_REQUEST_LINE_BYTES * 2))):
        status, _, body = _raw(daemon.socket, request)
        assert 400 <= status < 500, (status, body[:200])
    assert http.get("/v1/sessions").status_code == 200


# -- many connections trickling near-cap lines ----------------------------------------------


def test_many_slow_near_cap_request_lines_do_not_hold_the_daemon(
        daemon: RunningDaemon, http: httpx.Client) -> None:
    """Forty connections each trickle a request line just under the cap, a kilobyte at a
    time: other requests are still answered promptly (the parser buffers, the loop is free)."""
    stop = threading.Event()
    line = ("GET /v1/sessions?before=" + "s" * (MAX_REQUEST_LINE_BYTES - 200)).encode()
    sockets: list[socket.socket] = []
    for _ in range(40):
        raw = socket.socket(socket.AF_UNIX)
        raw.settimeout(10)
        raw.connect(str(daemon.socket))
        sockets.append(raw)

    def trickle() -> None:
        sent = 0
        while not stop.is_set() and sent < len(line):
            for raw in sockets:
                try:
                    raw.sendall(line[sent:sent + 1024])
                except OSError:
                    continue
            sent += 1024
            time.sleep(0.02)

    feeder = threading.Thread(target=trickle, daemon=True)
    feeder.start()
    try:
        worst = 0.0
        for _ in range(10):
            started = time.monotonic()
            assert http.get("/v1/sessions").status_code == 200
            worst = max(worst, time.monotonic() - started)
            time.sleep(0.1)
        assert worst < 2.0, worst
    finally:
        stop.set()
        feeder.join(10)
        for raw in sockets:
            raw.close()
    assert http.get("/v1/sessions").status_code == 200


# -- the path an error message names --------------------------------------------------------


def test_a_path_with_control_characters_reaches_the_message_escaped(
        daemon: RunningDaemon) -> None:
    """A path with an ANSI escape, a newline and a carriage return (outside the writable
    area, then inside it but missing): the refusal names it escaped, cut to its shown length,
    and the message holds no raw control character a log or terminal would act on."""
    nasty = "\x1b[2J\r\nFORGED LOG LINE\x07"
    with daemon.client("alice") as alice:
        session = alice.create_session()["id"]
        for path in ("/etc/" + nasty, "/tmp/" + nasty, "/tmp/" + "é" * 300 + nasty,
                     "/tmp/" + nasty + "😀" * 3000):
            with pytest.raises(FileTransferRefused) as refused:
                alice.read_file(session, path)
            message = str(refused.value)
            assert not any(ord(c) < 32 or c == "\x7f" for c in message), repr(message[:300])
            assert "\\x1b" in message or "\\x1b" not in repr(path[:SHOWN_PATH_CHARS])
        alice.close_session(session)


def test_a_long_path_is_cut_in_the_message_and_kept_whole_in_the_audit_record(
        daemon: RunningDaemon) -> None:
    """The message names at most ``SHOWN_PATH_CHARS`` characters of the path (and its
    length), whether the engine refuses it or the sandbox does."""
    with daemon.client("alice") as alice:
        session = alice.create_session()["id"]
        for path in ("/etc/" + "x" * 3000, "/tmp/" + "/".join(["d" * 200] * 15)):
            with pytest.raises(FileTransferRefused) as refused:
                alice.read_file(session, path)
            message = str(refused.value)
            assert f"({len(path)} characters)" in message, message[:400]
            assert path[:SHOWN_PATH_CHARS + 1] not in message
            assert len(message) < SHOWN_PATH_CHARS + 1000, len(message)
        alice.close_session(session)


def test_a_path_over_the_cap_is_named_with_its_real_length(daemon: RunningDaemon) -> None:
    path = "/tmp/" + "x" * 4995
    with daemon.client("alice") as alice:
        session = alice.create_session()["id"]
        with pytest.raises(FileTransferRefused, match="at most 4096 characters") as refused:
            alice.read_file(session, path)
        alice.close_session(session)
    assert f"({len(path)} characters)" in str(refused.value), str(refused.value)[-200:]


def test_the_client_reports_a_before_past_the_cap_as_a_daemon_error(
        daemon: RunningDaemon, http: httpx.Client) -> None:
    """The client's side of the one documented exception: a ``before`` under the cap is
    rlmbox's InvalidRequest, one past it the parser's plain 400, which the client reports
    as BadResponse (an ``RlmboxError``, not a raw HTTP library error); the daemon serves on."""
    from rlmbox.errors import DaemonError

    with daemon.client("alice") as alice:
        with pytest.raises(DaemonError) as under:
            alice.sessions_page(before="s" * (MAX_REQUEST_LINE_BYTES - 200))
        assert under.value.type == "InvalidRequest"
        with pytest.raises(DaemonError) as over:
            alice.sessions_page(before="s" * (MAX_REQUEST_LINE_BYTES + 10))
        assert over.value.type == "BadResponse"
        assert over.value.status == 400
    assert http.get("/v1/sessions").status_code == 200
