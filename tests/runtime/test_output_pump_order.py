"""The output pump hands the host every byte a cell wrote, in order and under the cell's
id, before the cell's result: first what its thread sent while the cell ran, then the
frames ``finish`` returns to travel in the result's own write."""

from __future__ import annotations

import os

from rlmbox.sandboxes import protocol
from rlmbox.sandboxes.agent.frame_io import FrameIO
from rlmbox.sandboxes.agent.pump import OutputPump


def sent_so_far(read_fd: int) -> bytes:
    """What the pump's thread has written to the host's end (non-blocking)."""
    chunks = []
    while True:
        try:
            chunks.append(os.read(read_fd, 1 << 16))
        except BlockingIOError:
            return b"".join(chunks)


def test_each_cells_output_reaches_the_host_whole_and_in_order() -> None:
    host_r, agent_w = os.pipe()
    os.set_blocking(host_r, False)
    out_r, out_w = os.pipe()
    err_r, _err_w = os.pipe()
    pump = OutputPump(FrameIO(os.open(os.devnull, os.O_RDONLY), agent_w), out_r, err_r)
    decoder = protocol.FrameDecoder(protocol.AGENT_FRAMES)
    for cell in range(200):
        pump.begin(f"c{cell}", 1 << 20, 16 << 20)
        lines = [f"{cell}:{i}\n" for i in range(40)]
        for line in lines:
            os.write(out_w, line.encode())
        dropped, tail = pump.finish()
        decoder.feed(sent_so_far(host_r) + tail)
        frames = []
        while (frame := decoder.next_frame()) is not None:
            frames.append(frame)
        assert dropped == {"stdout": 0, "stderr": 0}
        assert {(f["t"], f["id"], f["stream"]) for f in frames} == {("output", f"c{cell}",
                                                                      "stdout")}
        assert "".join(f["data"] for f in frames) == "".join(lines)


def test_output_over_the_cap_is_dropped_and_counted_when_the_cell_ends() -> None:
    host_r, agent_w = os.pipe()
    os.set_blocking(host_r, False)
    out_r, out_w = os.pipe()
    err_r, _err_w = os.pipe()
    pump = OutputPump(FrameIO(os.open(os.devnull, os.O_RDONLY), agent_w), out_r, err_r)
    pump.begin("c1", 100, 1 << 20)
    os.write(out_w, b"x" * 1000)
    dropped, tail = pump.finish()
    decoder = protocol.FrameDecoder(protocol.AGENT_FRAMES)
    decoder.feed(sent_so_far(host_r) + tail)
    kept = ""
    while (frame := decoder.next_frame()) is not None:
        kept += frame["data"]
    assert kept == "x" * 100
    assert dropped == {"stdout": 900, "stderr": 0}
