"""A session's start: its start record is durable before ``session()`` returns, the
sandbox's ``init`` runs while that record is fsynced, and ``session.ready`` is durable
before anything the session produced reaches the caller."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from wrapped_log import WrappedLog

from rlmbox.lm.scripted import ScriptedLM
from rlmbox.runtime.runtime import Runtime
from rlmbox.sandboxes.process.backend import ProcessSandbox
from rlmbox.sandboxes.protocol import Frame
from tests.conftest import write_policy


class StepsLog(WrappedLog):
    """An audit log that notes each append and sync, in order, beside the frames sent."""

    def __init__(self, directory: Path, steps: list[str]) -> None:
        super().__init__(directory)
        self.steps = steps
        self.seqs: dict[str, int] = {}

    def append(self, event: str, *, session: str | None = None, parent: str | None = None,
               depth: int = 0, tenant: str | None = None,
               bodies: Mapping[str, str | bytes] | None = None,
               **attributes: Any) -> dict[str, Any]:
        record = self.log.append(event, session=session, parent=parent, depth=depth,
                                 tenant=tenant, bodies=bodies, **attributes)
        self.steps.append(f"append {event}")
        self.seqs[event] = record["seq"]
        return record

    def sync(self) -> None:
        self.log.sync()
        self.steps.append("sync")

    @property
    def durable_seq(self) -> int:
        return self.log.durable_seq


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the host did, in order: audit appends and syncs, and the frames it sent."""
    noted: list[str] = []
    send = ProcessSandbox.send

    def noting_send(self: ProcessSandbox, frame: Frame, timeout: float | None = None) -> None:
        noted.append(f"send {frame['t']}")
        send(self, frame, timeout)

    monkeypatch.setattr(ProcessSandbox, "send", noting_send)
    return noted


@pytest.fixture
def audit(tmp_path: Path, steps: list[str]) -> Iterator[StepsLog]:
    sink = StepsLog(tmp_path / "audit", steps)
    yield sink
    sink.close()


@pytest.fixture
def runtime(tmp_path: Path, audit: StepsLog) -> Iterator[Runtime]:
    rt = Runtime(write_policy(tmp_path), lm=ScriptedLM(default="ok"), audit=audit,
                 pool_size=0)
    yield rt
    rt.close()


def test_the_start_record_is_durable_when_session_returns(
        runtime: Runtime, audit: StepsLog) -> None:
    with runtime.session():
        assert audit.durable_seq >= audit.seqs["session.create"]


def test_init_runs_while_the_start_record_is_fsynced(
        runtime: Runtime, steps: list[str]) -> None:
    """The start's fsync and the sandbox's init overlap: init is on its way before the
    sync, and the agent's report comes back after it."""
    runtime.backend("process").properties()   # the isolation probe starts a sandbox too
    steps.clear()
    with runtime.session():
        start = list(steps)
    assert start.index("send init") < start.index("append session.create") \
        < start.index("sync") < start.index("append session.ready")


def test_session_ready_is_durable_before_the_first_cell_returns(
        runtime: Runtime, audit: StepsLog) -> None:
    with runtime.session() as session:
        result = session.exec("x = 1")
        assert result.status == "ok"
        assert audit.durable_seq >= audit.seqs["session.ready"]


def test_session_ready_is_durable_when_a_session_closes_without_a_cell(
        runtime: Runtime, audit: StepsLog) -> None:
    runtime.session().close()
    assert audit.durable_seq >= audit.seqs["session.end"] > audit.seqs["session.ready"]
