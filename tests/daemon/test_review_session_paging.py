"""Review: a repeated ``limit`` or ``before`` on ``GET /v1/sessions`` is an ambiguous page
request; the daemon must refuse it with a 400, not silently honour the first value."""

from __future__ import annotations

import socket

import httpx
import pytest

from rlmbox.daemon.app import MAX_REQUEST_LINE_BYTES
from rlmbox.errors import FileTransferRefused
from rlmbox.runtime.session_files import MAX_PATH_CHARS

from .conftest import RunningDaemon


@pytest.mark.parametrize("repeat", ["limit=1&limit=5", "before={0}&before={1}"])
def test_a_repeated_page_parameter_is_a_400(daemon: RunningDaemon, http: httpx.Client,
                                            repeat: str) -> None:
    with daemon.client("alice") as alice:
        made = [alice.create_session()["id"] for _ in range(3)]
    answer = http.get("/v1/sessions?" + repeat.format(made[2], made[0]))
    assert answer.status_code == 400, answer.text


def test_an_over_long_before_is_a_json_400(daemon: RunningDaemon, http: httpx.Client) -> None:
    """docs/daemon.md: errors are ``{"error": {"type", "message"}}``; a ``before`` longer than
    aiohttp's default 8,190-byte request line was answered by aiohttp itself in plain text,
    so ``Client.sessions_page`` reported a BadResponse instead of an InvalidRequest."""
    answer = http.get("/v1/sessions?before=" + "s" * 9000)
    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith("application/json"), answer.text[:100]
    assert answer.json()["error"]["type"] == "InvalidRequest"


def test_the_longest_legal_file_path_reaches_rlmbox(daemon: RunningDaemon) -> None:
    """A path of ``MAX_PATH_CHARS`` four-byte characters, percent-encoded, is a request line
    of ~48 KiB: rlmbox answers it (here: the sandbox's file system refuses so long a name),
    not the HTTP parser; one character more is refused by rlmbox's own check."""
    with daemon.client("alice") as alice:
        session = alice.create_session()["id"]
        longest = "/tmp/" + "\U0001F600" * (MAX_PATH_CHARS - len("/tmp/"))
        with pytest.raises(FileTransferRefused) as missing:
            alice.read_file(session, longest)
        message = str(missing.value)
        assert message.endswith(f"({MAX_PATH_CHARS} characters): the sandbox refused: "
                                "OSError: File name too long"), message[-300:]
        with pytest.raises(FileTransferRefused, match="at most 4096 characters"):
            alice.read_file(session, longest + "x")


def test_a_request_line_past_the_daemons_cap_is_a_400_and_the_daemon_serves_on(
        daemon: RunningDaemon, http: httpx.Client) -> None:
    """Past ``MAX_REQUEST_LINE_BYTES`` the HTTP parser refuses the line itself (plain text,
    the one documented exception to JSON errors): still a 400, never a 5xx, and the next
    request is served."""
    line = f"GET /v1/sessions?before={'s' * MAX_REQUEST_LINE_BYTES} HTTP/1.1\r\n"
    with socket.socket(socket.AF_UNIX) as raw:   # httpx itself refuses a URL this long
        raw.settimeout(30)
        raw.connect(str(daemon.socket))
        raw.sendall(f"{line}Host: rlmbox\r\n\r\n".encode())
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.split()[1] == b"400", answer[:200]
    assert b"bytes when reading" in rest, answer[:400]
    assert http.get("/v1/sessions").status_code == 200
