"""A real daemon for tests: in-process on its own event loop thread, real SQLite, real
process sandboxes, a real Unix socket (and TCP on 127.0.0.1 when asked)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from rlmbox.daemon.client import Client
from rlmbox.daemon.lifecycle import Daemon, DaemonConfig
from rlmbox.daemon.store import SessionRow, Store
from rlmbox.lm.scripted import ScriptedLM
from rlmbox.policies.model import Policy, load_policy

TEST_LIMITS: dict[str, Any] = {
    "memory_mb": 256, "pids": 64, "cell_timeout_s": 20, "interrupt_grace_s": 2,
    "output_bytes": 65536, "disk_mb": 32, "cpu_seconds": 120,
}
START_TIMEOUT_S = 120.0


def policy_file(directory: Path, name: str = "test", **sections: Any) -> Path:
    """The default preset with test limits and ``sections`` replaced."""
    base = load_policy("default").model_dump(mode="json")
    base["name"] = name
    base["limits"] = {**base["limits"], **TEST_LIMITS}
    base.update(sections)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(base, sort_keys=False))
    return path


def short_dir() -> Path:
    """A private directory with a short path: Unix socket paths are capped at 108 bytes."""
    return Path(tempfile.mkdtemp(prefix="rbx-", dir="/tmp"))


class RunningDaemon:
    """A daemon started on a background event loop; ``stop`` is idempotent."""

    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.daemon = Daemon(config)
        self.stopped = False
        try:
            asyncio.run_coroutine_threadsafe(self.daemon.start(), self.loop).result(
                START_TIMEOUT_S)
        except BaseException:
            self._end_loop()
            raise

    @property
    def socket(self) -> Path:
        assert self.config.socket is not None
        return self.config.socket

    def token(self, tenant: str) -> str:
        store = Store(self.config.state_dir)   # a second connection, as `rlmbox token` uses
        try:
            return store.create_token(tenant)[1]
        finally:
            store.close()

    def client(self, tenant: str) -> Client:
        return Client(socket=self.socket, token=self.token(tenant))

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        asyncio.run_coroutine_threadsafe(self.daemon.stop(), self.loop).result(START_TIMEOUT_S)
        self._end_loop()

    def _end_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    path = short_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def start_daemon(tmp_path: Path, sock_dir: Path) -> Iterator[Callable[..., RunningDaemon]]:
    """Starts daemons (stopped at teardown) with the test policy as ``test``."""
    started: list[RunningDaemon] = []

    def start(policies: dict[str, Policy] | None = None, **overrides: Any) -> RunningDaemon:
        config = DaemonConfig(
            state_dir=tmp_path / "state", socket=sock_dir / "rlmbox.sock",
            policies=policies or {"test": load_policy(policy_file(tmp_path))},
            lm=ScriptedLM(rules_for_tests()), audit_dir=None)
        for key, value in overrides.items():
            if not hasattr(config, key):
                raise TypeError(f"DaemonConfig has no field {key!r}")
            setattr(config, key, value)
        running = RunningDaemon(config)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


def rules_for_tests() -> Callable[[str], str]:
    return lambda prompt: f"daemon-lm saw: {prompt}"


@pytest.fixture
def daemon(start_daemon: Callable[..., RunningDaemon]) -> RunningDaemon:
    return start_daemon()


@pytest.fixture
def http(daemon: RunningDaemon) -> Iterator[httpx.Client]:
    """Raw HTTP to the daemon as tenant alice, for requests the client would not send."""
    transport = httpx.HTTPTransport(uds=str(daemon.socket))
    headers = {"Authorization": f"Bearer {daemon.token('alice')}"}
    with httpx.Client(transport=transport, base_url="http://rlmbox", headers=headers,
                      timeout=120) as client:
        yield client


def stored_session(state_dir: Path, tenant: str, session_id: str) -> SessionRow:
    """The daemon's database row of a session, read from its state directory."""
    store = Store(state_dir)
    try:
        row = store.session(session_id, tenant)
    finally:
        store.close()
    assert row is not None
    return row
