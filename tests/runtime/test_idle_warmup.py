"""The agent's warm-up runs only while the host has nothing for it (issue 16: cold start).

A cold start's ``ready`` no longer waits for what only speeds up a first cell; that work
runs after ``ready``, in the gaps, and never ahead of a frame the host sent or a cell.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from rlmbox.sandboxes import protocol
from rlmbox.sandboxes.agent.frame_io import FrameIO
from rlmbox.sandboxes.agent.idle_warmup import GRACE_S, IdleWarmup, default_steps
from rlmbox.sandboxes.bundle import write_bundle


def test_steps_run_in_order_while_nothing_waits() -> None:
    done: list[int] = []
    warmup = IdleWarmup([lambda: done.append(1), lambda: done.append(2)])
    warmup.run(lambda _: False)
    assert done == [1, 2]
    assert warmup.left == 0


def test_a_waiting_frame_holds_the_steps_until_the_next_idle_gap() -> None:
    done: list[int] = []
    waiting = iter([False, False, True])   # the grace, then before each step
    warmup = IdleWarmup([lambda: done.append(1), lambda: done.append(2)])
    warmup.run(lambda _: next(waiting))
    assert done == [1]
    warmup.run(lambda _: False)
    assert done == [1, 2]


def test_a_failing_step_is_skipped_and_the_rest_run() -> None:
    done: list[int] = []

    def broken() -> None:
        raise ImportError("an optional layer this bundle lacks")

    warmup = IdleWarmup([broken, lambda: done.append(2)])
    warmup.run(lambda _: False)
    assert done == [2]


def test_no_step_starts_until_the_host_was_quiet_for_the_grace() -> None:
    """A cold start's ``init`` (or a first cell) that comes at once is not held up by a
    step under way: the first look waits ``GRACE_S`` for it."""
    looks: list[float] = []
    done: list[int] = []

    def waiting(timeout: float) -> bool:
        looks.append(timeout)
        return True   # init came within the grace

    IdleWarmup([lambda: done.append(1)]).run(waiting)
    assert looks == [GRACE_S]
    assert done == []


def test_stop_drops_every_step_left() -> None:
    """From the first cell on the agent runs nothing of its own between cells."""
    done: list[int] = []
    warmup = IdleWarmup([lambda: done.append(1)])
    warmup.stop()
    warmup.run(lambda _: False)
    assert done == []


def test_the_default_steps_warm_the_compiler_first() -> None:
    from rlmbox.sandboxes.agent.warm_compiler import warm_compiler
    assert default_steps()[0] is warm_compiler


def test_frame_io_says_a_frame_waits_once_bytes_arrive_and_not_before() -> None:
    host_r, agent_w = os.pipe()
    agent_r, host_w = os.pipe()
    try:
        io = FrameIO(agent_r, agent_w)
        assert not io.waiting()
        os.write(host_w, protocol.encode({"t": "shutdown"}))
        assert io.waiting(1.0)
        assert io.recv() == {"t": "shutdown"}
        assert not io.waiting()
    finally:
        for fd in (host_r, agent_w, agent_r, host_w):
            os.close(fd)


def test_frame_io_says_a_frame_waits_when_one_is_held_or_half_read() -> None:
    """Bytes already read into the decoder, or frames held back while a cell began, are
    waiting frames too: nothing is left on the descriptor to tell of them."""
    host_r, agent_w = os.pipe()
    agent_r, host_w = os.pipe()
    try:
        io = FrameIO(agent_r, agent_w)
        os.write(host_w, protocol.encode({"t": "shutdown"}) * 2)
        assert io.recv() == {"t": "shutdown"}   # one read took both frames
        assert io.waiting()
    finally:
        for fd in (host_r, agent_w, agent_r, host_w):
            os.close(fd)


CHECK = ("import sys\nprint(sorted(m for m in ('traceback', "
         "'rlmbox.sandboxes.agent.gated_context') if m in sys.modules))")


def _first_cell_sees(tmp_path: Path, *argv: str) -> str:
    """The agent of a freshly written bundle, run bare over pipes: ``init`` and a first
    cell arrive in one write, so the idle warm-up never gets a gap between them."""
    write_bundle(tmp_path)
    frames: list[dict[str, Any]] = []
    with subprocess.Popen([sys.executable, "-I", "-B", str(tmp_path / "agent.py"), *argv],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          cwd=tmp_path) as agent:
        assert agent.stdin is not None
        assert agent.stdout is not None
        decoder = protocol.FrameDecoder(protocol.AGENT_FRAMES)
        try:
            while not frames:
                decoder.feed(os.read(agent.stdout.fileno(), 65536))
                frames += iter(decoder.next_frame, None)
            assert frames[0]["t"] == "ready"
            agent.stdin.write(protocol.encode({"t": "init", "id": "i", "config": {}})
                              + protocol.encode({"t": "exec", "id": "c", "code": CHECK}))
            agent.stdin.flush()
            while not any(f["t"] == "result" and f["id"] == "c" for f in frames):
                decoder.feed(os.read(agent.stdout.fileno(), 65536))
                frames += iter(decoder.next_frame, None)
        finally:
            agent.kill()
    return "".join(f["data"] for f in frames if f["t"] == "output")


def test_an_agent_confined_at_init_warms_up_before_ready(tmp_path: Path) -> None:
    """Docker's agent (no ``--confine``): a pooled container's ``init`` never waits on a
    warm-up step, so every step ran before ``ready``."""
    seen = _first_cell_sees(tmp_path)
    assert seen.strip() == "['rlmbox.sandboxes.agent.gated_context', 'traceback']"


def test_an_agent_confined_at_start_leaves_the_warm_up_to_idle_time(tmp_path: Path) -> None:
    """The process backend's agent: a cold start's ``ready`` does not wait for it, and a
    first cell that comes at once is not held up by it (it imports at use instead)."""
    seen = _first_cell_sees(tmp_path, '--confine={"seccomp":false,"landlock":false}')
    assert seen.strip() == "[]"
