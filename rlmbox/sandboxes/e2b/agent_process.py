"""The agent as a long-running process in the VM, its stdio reached through envd.

The SDK's command handle decodes stdout as UTF-8, which would corrupt binary frame
headers, so this speaks envd's process service directly with the SDK's own RPC client
(``e2b.envd``): ``Start`` with stdin open, a stream of raw stdout chunks, ``SendInput``
for stdin. Nothing listens inside the VM but envd itself; rlmbox opens no port and runs
no broker there.

Two threads bridge the RPC to a pipe pair, so the host reads frames with the same
:class:`FrameChannel` as every backend (deadlines, frame cap, wake on kill): one copies
stdout chunks into a pipe (stderr goes to a bounded tail), one drains the host's frames
from a pipe into ``SendInput`` calls. A stream that ends without the process's end event
(the connection dropped, the VM went away) is recorded as the reason and ends the channel.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections import deque
from typing import Any, Final

from rlmbox.errors import SandboxCrashed, SandboxUnavailable
from rlmbox.sandboxes.channel import FrameChannel
from rlmbox.sandboxes.e2b.calls import Cause, classify, describe

_PIPE_BYTES: Final = 1024 * 1024     # F_SETPIPE_SZ: fewer, larger SendInput calls
_F_SETPIPE_SZ: Final = 1031
STDERR_TAIL_BYTES: Final = 16 * 1024
_INPUT_TIMEOUT_MS: Final = 30_000


def _pipe() -> tuple[int, int]:
    read_fd, write_fd = os.pipe()
    with contextlib.suppress(OSError):   # a smaller default pipe still works
        fcntl.fcntl(write_fd, _F_SETPIPE_SZ, _PIPE_BYTES)
    return read_fd, write_fd


def _ended(status: str, error: str | None) -> str:
    """The agent process's end as envd reports it, in words."""
    if status == "signal: killed" or status.endswith(": 9"):
        return ("the agent was killed by SIGKILL inside the VM (the guest kernel's "
                "out-of-memory killer does this when the template's memory runs out)")
    return f"the agent process ended ({status or 'exit'}{', ' + error if error else ''})"


class AgentProcess:
    """The agent's process in one VM; :attr:`channel` carries its frames."""

    def __init__(self, sdk_sandbox: Any, argv: list[str], cwd: str, *,
                 start_timeout: float) -> None:
        from e2b.envd.client_sync import create_rpc_client  # noqa: PLC0415 - optional SDK
        from e2b.envd.process import process_connect, process_pb  # noqa: PLC0415
        from protobuf import Oneof  # noqa: PLC0415 - the SDK's protobuf runtime

        self._pb = process_pb
        self._oneof = Oneof
        self._rpc = create_rpc_client(process_connect.ProcessClientSync,
                                      sdk_sandbox.envd_api_url, sdk_sandbox.connection_config)
        self._stderr: deque[bytes] = deque()
        self._stderr_len = 0
        self.ended: str | None = None     # why the stream ended, once it has
        self._closed = threading.Event()
        self._events = self._rpc.start(
            process_pb.StartRequest(
                process=process_pb.ProcessConfig(cmd=argv[0], args=argv[1:], envs={},
                                                 cwd=cwd),
                stdin=True),
            headers={"Keepalive-Ping-Interval": "50"}, timeout_ms=0)
        self.pid = self._first_pid(start_timeout)
        out_r, self._out_w = _pipe()
        self._in_r, in_w = _pipe()
        self.channel = FrameChannel(out_r, in_w)
        # each fd has one owner that closes it: the output pump out_w, the input pump in_r,
        # close() the two the channel uses
        self._channel_fds = (out_r, in_w)
        self._threads = [
            threading.Thread(target=self._pump_output, daemon=True, name=f"e2b-out-{self.pid}"),
            threading.Thread(target=self._pump_input, daemon=True, name=f"e2b-in-{self.pid}")]
        for thread in self._threads:
            thread.start()

    def _first_pid(self, timeout: float) -> int:
        """The start event's pid (envd's, not the agent's word), within ``timeout``: the
        stream has no deadline of its own, so it is read on a thread that is left behind
        (until the VM is killed) when envd never answers."""
        answer: list[int | BaseException] = []

        def read() -> None:
            try:
                answer.append(self._read_start())
            except BaseException as exc:   # handed to the creating thread
                answer.append(exc)

        reader = threading.Thread(target=read, daemon=True, name="e2b-start")
        reader.start()
        reader.join(timeout)
        if not answer:
            raise SandboxUnavailable(
                f"envd did not report the agent's start within {timeout:g} s")
        if isinstance(answer[0], BaseException):
            raise answer[0]
        return answer[0]

    def _read_start(self) -> int:
        for response in self._events:
            event = response.event.event if response.event is not None else None
            if event is not None and event.field == "start":
                return int(event.value.pid)
        raise SandboxCrashed("envd ended the agent's process stream before it started")

    @property
    def stderr_tail(self) -> str:
        return b"".join(self._stderr).decode("utf-8", errors="replace")

    def _keep_stderr(self, data: bytes) -> None:
        self._stderr.append(data)
        self._stderr_len += len(data)
        while self._stderr_len > STDERR_TAIL_BYTES and len(self._stderr) > 1:
            self._stderr_len -= len(self._stderr.popleft())

    def _pump_output(self) -> None:
        reason = "the agent's output stream ended without an end event (connection dropped)"
        try:
            for response in self._events:
                event = response.event.event if response.event is not None else None
                if event is None:
                    continue
                if event.field == "data":
                    output = event.value.output
                    if output is None:
                        continue
                    if output.field == "stdout":
                        self._write_all(output.value)
                    elif output.field == "stderr":
                        self._keep_stderr(output.value)
                elif event.field == "end":
                    reason = _ended(event.value.status, event.value.error)
                    break
        except Exception as exc:
            if not self._closed.is_set():
                cause = classify(exc)
                reason = ("the connection to the sandbox dropped mid-stream: "
                          + describe(exc, cause) if cause is not Cause.NOT_FOUND
                          else "the sandbox is gone: " + describe(exc, cause))
        finally:
            self.ended = self.ended or reason
            os.close(self._out_w)   # the channel reads EOF: SandboxCrashed

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._out_w, view):]

    def _pump_input(self) -> None:
        try:
            self._send_until_closed()
        finally:
            os.close(self._in_r)

    def _send_until_closed(self) -> None:
        pb = self._pb
        selector = pb.ProcessSelector(selector=self._oneof("pid", self.pid))
        while True:
            data = os.read(self._in_r, _PIPE_BYTES)
            if not data:
                return   # close() closed the channel's end
            try:
                self._rpc.send_input(
                    pb.SendInputRequest(process=selector, input=pb.ProcessInput(
                        input=self._oneof("stdin", data))), timeout_ms=_INPUT_TIMEOUT_MS)
            except Exception as exc:
                if not self._closed.is_set():
                    self.ended = self.ended or ("sending to the agent failed: "
                                                + describe(exc, classify(exc)))
                return   # in_r closes: the host's next send fails (SandboxCrashed)

    def close(self) -> None:
        """Ends the channel; never waits. The input pump ends at its next read (or when
        its SendInput call fails, the VM being gone); the output pump when the stream
        does, which killing the VM ensures (a generator cannot be closed from another
        thread while it is being read); its writes fail at once, the read end being gone."""
        if self._closed.is_set():
            return
        self._closed.set()
        self.channel.close()
        for fd in self._channel_fds:
            os.close(fd)
