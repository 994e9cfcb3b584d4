"""Where the daemon listens: loopback TCP works; a public bind needs --tcp-public."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from rlmbox.daemon.client import Client
from rlmbox.daemon.paths import bind_unix, parse_tcp, private_dir
from rlmbox.errors import DaemonError

from .conftest import RunningDaemon


@pytest.mark.parametrize("address", ["0.0.0.0:8765", "10.1.2.3:80", "[::]:8765",
                                     "192.168.0.1:0"])
def test_non_loopback_tcp_is_refused_without_tcp_public(address: str) -> None:
    with pytest.raises(DaemonError, match="TLS"):
        parse_tcp(address, public=False)
    assert parse_tcp(address, public=True)[1] == int(address.rpartition(":")[2])


@pytest.mark.parametrize("address", ["localhost", "127.0.0.1:99999", "example.com:80",
                                     ":80", "127.0.0.1:x"])
def test_malformed_tcp_addresses_are_refused(address: str) -> None:
    with pytest.raises(DaemonError):
        parse_tcp(address, public=True)


def test_the_daemon_refuses_a_public_bind_before_starting(
        start_daemon: Callable[..., RunningDaemon]) -> None:
    with pytest.raises(DaemonError, match="--tcp-public"):
        start_daemon(tcp="0.0.0.0:0")


def test_loopback_tcp_serves_the_same_api(start_daemon: Callable[..., RunningDaemon]) -> None:
    running = start_daemon(tcp="127.0.0.1:0")
    assert running.daemon.tcp_address is not None
    host, port = running.daemon.tcp_address
    assert host == "127.0.0.1"
    assert httpx.get(f"http://127.0.0.1:{port}/v1/sessions").status_code == 401
    with Client(url=f"http://127.0.0.1:{port}", token=running.token("alice")) as client:
        info = client.create_session()
        assert client.exec(info["id"], "print(6 * 7)").stdout == "42\n"
        client.close_session(info["id"])


def test_a_second_daemon_on_the_same_state_is_refused(
        start_daemon: Callable[..., RunningDaemon], daemon: RunningDaemon) -> None:
    with pytest.raises(DaemonError, match="another rlmbox daemon"):
        start_daemon()
    assert daemon.socket.exists()   # the refused one did not touch the running one's socket


def test_a_socket_directory_others_may_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(DaemonError, match="writable by group or others"):
        bind_unix(shared / "rlmbox.sock")
    assert not (shared / "rlmbox.sock").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the directory away")
def test_a_state_directory_another_uid_owns_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 65534, 65534)
    with pytest.raises(DaemonError, match="owned by uid 65534"):
        private_dir(theirs)


def test_a_file_in_the_sockets_place_is_not_replaced(tmp_path: Path) -> None:
    place = tmp_path / "run"
    place.mkdir(mode=0o700)
    (place / "rlmbox.sock").write_text("not a socket")
    with pytest.raises(DaemonError, match="not a socket"):
        bind_unix(place / "rlmbox.sock")
    assert (place / "rlmbox.sock").read_text() == "not a socket"
