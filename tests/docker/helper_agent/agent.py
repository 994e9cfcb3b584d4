"""A stand-in agent for the Docker backend's plumbing tests (stdlib only).

Speaks the frame protocol on stdin/stdout like the real agent: sends ``ready``, runs each
``exec`` frame's code in one persistent namespace and answers with a ``result`` frame
whose ``answer`` is the namespace's ``answer`` variable. Model-code stdio is detached
from the protocol streams. SIGINT during a cell gives status ``interrupted``.
"""

import contextlib
import io
import json
import os
import struct
import sys
import traceback
from typing import Any

HEADER = struct.Struct(">I")


def main() -> int:  # noqa: PLR0915 - a linear stand-in, kept in one piece
    proto_in = os.fdopen(os.dup(0), "rb", buffering=0)
    proto_out = os.fdopen(os.dup(1), "wb", buffering=0)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)

    def send(frame: dict[str, Any]) -> None:
        body = json.dumps(frame, separators=(",", ":")).encode()
        view = memoryview(HEADER.pack(len(body)) + body)
        while view:  # raw writes may be partial (gVisor returns after 64 KiB)
            view = view[proto_out.write(view):]

    def read_exact(n: int) -> bytes | None:
        data = b""
        while len(data) < n:
            try:
                chunk = proto_in.read(n - len(data))
            except KeyboardInterrupt:
                continue
            if not chunk:
                return None
            data += chunk
        return data

    send({"t": "ready", "version": "1", "pid": os.getpid()})
    namespace: dict[str, Any] = {"__name__": "__cell__", "send_raw": proto_out.write}
    while True:
        header = read_exact(HEADER.size)
        if header is None:
            return 0
        body = read_exact(HEADER.unpack(header)[0])
        if body is None:
            return 0
        frame = json.loads(body)
        if frame["t"] == "shutdown":
            return 0
        if frame["t"] == "init":
            send({"t": "result", "id": frame["id"], "status": "ok"})
            continue
        if frame["t"] != "exec":
            continue
        namespace.pop("answer", None)
        result: dict[str, Any] = {"t": "result", "id": frame["id"], "status": "ok"}
        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed):
                exec(compile(frame["code"], "<cell>", "exec"), namespace)  # noqa: S102
        except KeyboardInterrupt:
            result["status"] = "interrupted"
        except BaseException:
            result["status"] = "error"
            result["error"] = traceback.format_exc(limit=3)[-2000:]
        if printed.getvalue():
            send({"t": "output", "id": frame["id"], "stream": "stdout",
                  "data": printed.getvalue()[-65536:]})
        if "answer" in namespace:
            result["answer"] = namespace["answer"]
        try:
            send(result)
        except (TypeError, ValueError):
            send({"t": "result", "id": frame["id"], "status": "error",
                  "error": "answer is not JSON"})


if __name__ == "__main__":
    sys.exit(main())
