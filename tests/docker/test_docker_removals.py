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
