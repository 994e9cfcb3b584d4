"""TEST DOUBLE, not E2B: the init of one fake microVM, run inside a local process jail.

The double's envd (``envd.py``) cannot start processes in the jail itself: every process
of one "VM" must share its pid namespace and filesystem, so that ``kill -INT <pid>`` from a
second process reaches the first, as inside a real microVM. This program is that VM's
process starter. It speaks length-prefixed JSON on its stdin/stdout with the host:

host -> guest: {"op": "start", "id", "argv", "env", "cwd", "stdin"}, {"op": "stdin", "id",
               "data" (base64)}, {"op": "close_stdin", "id"}, {"op": "signal", "id", "sig"}
guest -> host: {"ev": "start", "id", "pid"} | {"ev": "start_failed", "id", "error"},
               {"ev": "out", "id", "stream", "data" (base64)}, {"ev": "end", "id", "code"},
               {"ev": "stdin_written", "id"} (one per "stdin" op, once it is in the pipe)

Standard library only: it runs under ``python -I`` in the jail.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import queue
import struct
import subprocess
import sys
import threading
from typing import IO, Any, BinaryIO

_write_lock = threading.Lock()
_out = sys.stdout.buffer


def _emit(event: dict[str, Any]) -> None:
    data = json.dumps(event).encode()
    with _write_lock:
        _out.write(struct.pack(">I", len(data)) + data)
        _out.flush()


def _read_exact(stream: BinaryIO, count: int) -> bytes | None:
    chunks = b""
    while len(chunks) < count:
        chunk = stream.read(count - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return chunks


def _pump(proc_id: int, stream_name: str, stream: IO[bytes]) -> None:
    with contextlib.suppress(OSError):   # F_SETPIPE_SZ: fewer, larger events
        fcntl.fcntl(stream.fileno(), 1031, 1024 * 1024)
    while True:
        data = os.read(stream.fileno(), 1024 * 1024)
        if not data:
            return
        _emit({"ev": "out", "id": proc_id, "stream": stream_name,
               "data": base64.b64encode(data).decode()})


def _feed(proc_id: int, proc: subprocess.Popen[bytes],
          inputs: queue.Queue[bytes | None]) -> None:
    """Writes a process's stdin on a thread of its own: a process that stops reading
    blocks only this thread, never the VM's other processes. Each write is acknowledged
    once it is in the pipe, so the host's SendInput returns only then (as envd's does)."""
    stdin = proc.stdin
    if stdin is None:
        return
    while True:
        data = inputs.get()
        try:
            if data is None:
                stdin.close()
                return
            stdin.write(data)
            stdin.flush()
        except OSError:
            return
        finally:
            if data is not None:
                _emit({"ev": "stdin_written", "id": proc_id})


def _watch(proc_id: int, proc: subprocess.Popen[bytes],
           pumps: list[threading.Thread]) -> None:
    code = proc.wait()
    for pump in pumps:
        pump.join()
    _emit({"ev": "end", "id": proc_id, "code": code})


def main() -> None:
    procs: dict[int, queue.Queue[bytes | None]] = {}   # id -> the queue of its stdin
    signals: dict[int, subprocess.Popen[bytes]] = {}   # id -> the process, to signal
    source = sys.stdin.buffer
    while True:
        header = _read_exact(source, 4)
        if header is None:
            break
        command = json.loads(_read_exact(source, struct.unpack(">I", header)[0]) or b"{}")
        op, proc_id = command.get("op"), command.get("id")
        if op == "start":
            try:
                proc = subprocess.Popen(
                    command["argv"], cwd=command.get("cwd") or None,
                    env=command.get("env") or None, close_fds=True,
                    stdin=subprocess.PIPE if command.get("stdin") else subprocess.DEVNULL,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            except OSError as exc:
                _emit({"ev": "start_failed", "id": proc_id, "error": str(exc)})
                continue
            inputs: queue.Queue[bytes | None] = queue.Queue()
            procs[proc_id] = inputs
            if proc.stdin is not None:
                threading.Thread(target=_feed, args=(proc_id, proc, inputs), daemon=True).start()
            signals[proc_id] = proc
            _emit({"ev": "start", "id": proc_id, "pid": proc.pid})
            pumps = [threading.Thread(target=_pump, args=(proc_id, name, stream), daemon=True)
                     for name, stream in (("stdout", proc.stdout), ("stderr", proc.stderr))]
            for pump in pumps:
                pump.start()
            threading.Thread(target=_watch, args=(proc_id, proc, pumps), daemon=True).start()
        elif op == "stdin" and proc_id in procs:
            procs[proc_id].put(base64.b64decode(command["data"]))
        elif op == "close_stdin" and proc_id in procs:
            procs[proc_id].put(None)
        elif op == "signal" and proc_id in signals:
            with contextlib.suppress(OSError):
                signals[proc_id].send_signal(int(command["sig"]))


if __name__ == "__main__":
    main()
