"""The background queue of engine removals survives a removal that fails in any way, and
says so (a review found a BaseException killed its thread: every later removal and the
exit handler's wait then hung)."""

from __future__ import annotations

import logging
import threading

import pytest

from rlmbox.sandboxes.docker.host_kill import Removals


class Odd(BaseException):
    """Not an Exception: what a bare ``except Exception`` lets through."""


def test_a_removal_that_raises_anything_leaves_the_queue_working_and_is_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    removals = Removals()
    ran = threading.Event()

    def odd() -> None:
        raise Odd("engine went away mid-call")

    def broken() -> None:
        raise RuntimeError("read timed out")

    caplog.set_level(logging.WARNING, logger="rlmbox.docker")
    removals.add(odd)
    removals.add(broken)
    removals.add(ran.set)
    assert removals.wait(10), "the queue stopped after a failed removal"
    assert ran.is_set()
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "engine went away mid-call" in logged
    assert "read timed out" in logged


class _RefusingEngine:
    """A client whose engine refuses a container's removal ``refusals`` times with the 500
    Docker 20.10 answers when the container stops between its check and its kill ("Could
    not kill running container ..., cannot remove - Container ... is not running"), then
    removes it."""

    def __init__(self, refusals: int) -> None:
        self.calls = 0
        self.refusals = refusals
        self.api = self

    def remove_container(self, container: str, **_options: object) -> None:
        import docker.errors

        self.calls += 1
        if self.calls <= self.refusals:
            raise docker.errors.APIError(
                f"500 Server Error: Could not kill running container {container}, cannot "
                f"remove - Container {container} is not running")


def test_a_removal_the_engine_refuses_while_the_container_stops_is_tried_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """CI saw one container left 'Removal In Progress' after that 500: the removal off the
    closing path tries again (backing off) rather than leave it for `rlmbox gc`."""
    from rlmbox.sandboxes.docker import backend

    monkeypatch.setattr(backend, "REMOVAL_RETRY_DELAYS_S", (0.01, 0.01, 0.01))
    engine = _RefusingEngine(refusals=2)
    backend.remove_retrying(engine, "c1")
    assert engine.calls == 3
    stubborn = _RefusingEngine(refusals=10)
    with pytest.raises(Exception, match="cannot remove"):
        backend.remove_retrying(stubborn, "c2")
    assert stubborn.calls == 4   # the first try and one after each delay
