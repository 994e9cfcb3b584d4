"""TEST DOUBLE, not E2B: the endpoints of E2B's control plane and envd that rlmbox uses.

Written from E2B's published specs (the control plane's OpenAPI ``spec/openapi.yml`` and
envd's ``process.proto`` / ``filesystem`` HTTP API in github.com/e2b-dev/infra), never from
E2B's code. One HTTP/1.1 server on 127.0.0.1 serves both, as the SDK allows (``api_url``
and ``sandbox_url`` point at it; envd requests name their sandbox in ``E2b-Sandbox-Id``).

Control plane: POST /v2/sandboxes, GET/DELETE /sandboxes/{id}, POST /sandboxes/{id}/timeout,
POST /v2/sandboxes/{id}/connect, GET /v2/sandboxes (filtered by metadata).
envd: process.Process/{Start, Connect, SendInput, SendSignal, CloseStdin, List} over
Connect+JSON, POST/GET /files, GET /health.

Each sandbox is a :class:`microvm.MicroVM`: a real local jail in which the real agent runs.
Fault knobs (:class:`Faults`) make it answer 429/5xx, lose a create's answer after making
the VM, drop process streams mid-cell, or let a sandbox expire.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import shutil
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from rlmbox.sandboxes.base import ResourceLimits

from . import connect_wire as wire
from .microvm import GuestProcess, MicroVM

ENVD_VERSION = "0.5.7"        # the SDK streams octet-stream uploads from 0.5.7 on
MiB = 1024 * 1024
KEEPALIVE_S = 5.0


@dataclass(frozen=True)
class Template:
    """What a template gives each sandbox (E2B: set when the template is built)."""

    cpu_count: int = 2
    memory_mb: int = 512
    disk_mb: int = 64


@dataclass
class Faults:
    """What the double does wrong on purpose, for the fault tests."""

    # (method, path prefix) -> statuses still to answer with, one per request
    statuses: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    stream_generation: int = 0      # bumped by drop_streams(): open streams end abruptly
    lost_creates: int = 0           # creates that make a VM, then answer 500 anyway

    def fail_next(self, method: str, prefix: str, *statuses: int) -> None:
        self.statuses.setdefault((method, prefix), []).extend(statuses)

    def take(self, method: str, path: str) -> int | None:
        for (want_method, prefix), queue in self.statuses.items():
            if method == want_method and path.startswith(prefix) and queue:
                return queue.pop(0)
        return None


@dataclass
class SandboxRecord:
    sandbox_id: str
    template_id: str
    metadata: dict[str, str]
    internet: bool
    env_vars: dict[str, str]
    started_at: dt.datetime
    end_at: dt.datetime
    vm: MicroVM


class E2BDouble:
    """The double's state and its HTTP server; a context manager (kills every VM)."""

    def __init__(self, api_key: str | None = None,
                 templates: dict[str, Template] | None = None) -> None:
        self.api_key = api_key or "e2b_double_" + secrets.token_hex(16)
        self.templates = templates or {"rlmbox-test": Template(),
                                       "code-interpreter-v1": Template()}
        self.faults = Faults()
        self.sandboxes: dict[str, SandboxRecord] = {}
        self.created: list[dict[str, Any]] = []    # every create request body, for tests
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request
        self._lock = threading.Lock()
        self._root = Path(tempfile.mkdtemp(prefix="e2b-double-"))
        self._root.chmod(0o711)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._stopping = threading.Event()
        self._threads = [threading.Thread(target=self._server.serve_forever, daemon=True),
                         threading.Thread(target=self._expire_loop, daemon=True)]
        for thread in self._threads:
            thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> E2BDouble:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            records = list(self.sandboxes.values())
            self.sandboxes.clear()
        for record in records:
            record.vm.kill()
        shutil.rmtree(self._root, ignore_errors=True)

    # --- control plane ------------------------------------------------------------------

    def create(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        template_id = str(body.get("templateID") or "")
        template = self.templates.get(template_id)
        if template is None:
            return 404, {"code": 404, "message": f"template '{template_id}' not found"}
        self.created.append(body)
        sandbox_id = "i" + secrets.token_hex(10)
        limits = ResourceLimits(memory_bytes=template.memory_mb * MiB,
                                cpu_cores=float(template.cpu_count), pids=256,
                                disk_bytes=template.disk_mb * MiB)
        vm_root = self._root / sandbox_id
        vm_root.mkdir(mode=0o711)
        now = dt.datetime.now(dt.UTC)
        record = SandboxRecord(
            sandbox_id, template_id, dict(body.get("metadata") or {}),
            bool(body.get("allow_internet_access", True)), dict(body.get("envVars") or {}),
            now, now + dt.timedelta(seconds=int(body.get("timeout") or 15)),
            MicroVM(sandbox_id, vm_root, limits))
        with self._lock:
            self.sandboxes[sandbox_id] = record
        if self.faults.lost_creates > 0:
            self.faults.lost_creates -= 1
            return 500, {"code": 500, "message": "injected: the VM exists, the answer is lost"}
        return 201, self._sandbox_json(record)

    def _sandbox_json(self, record: SandboxRecord) -> dict[str, Any]:
        return {"templateID": record.template_id, "sandboxID": record.sandbox_id,
                "clientID": "double", "envdVersion": ENVD_VERSION, "domain": None}

    def detail_json(self, record: SandboxRecord) -> dict[str, Any]:
        template = self.templates[record.template_id]
        return {**self._sandbox_json(record),
                "startedAt": record.started_at.isoformat(), "endAt": record.end_at.isoformat(),
                "cpuCount": template.cpu_count, "memoryMB": template.memory_mb,
                "diskSizeMB": template.disk_mb, "state": "running",
                "metadata": record.metadata, "allowInternetAccess": record.internet}

    def find(self, sandbox_id: str) -> SandboxRecord | None:
        with self._lock:
            return self.sandboxes.get(sandbox_id)

    def kill(self, sandbox_id: str) -> bool:
        with self._lock:
            record = self.sandboxes.pop(sandbox_id, None)
        if record is None:
            return False
        record.vm.kill()
        return True

    def set_timeout(self, sandbox_id: str, seconds: int) -> bool:
        record = self.find(sandbox_id)
        if record is None:
            return False
        record.end_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
        return True

    def expire(self, sandbox_id: str) -> None:
        """Fault: the sandbox's timeout passes now (E2B then kills it)."""
        self.set_timeout(sandbox_id, 0)
        self._expire_due()

    def drop_streams(self) -> None:
        """Fault: every open process stream ends without its end-of-stream message, as
        when a connection drops mid-cell; the processes keep running."""
        self.faults.stream_generation += 1

    def _expire_loop(self) -> None:
        while not self._stopping.wait(0.2):
            self._expire_due()

    def _expire_due(self) -> None:
        now = dt.datetime.now(dt.UTC)
        with self._lock:
            due = [sid for sid, rec in self.sandboxes.items() if rec.end_at <= now]
        for sandbox_id in due:
            self.kill(sandbox_id)

    def listed(self, metadata: dict[str, str]) -> list[dict[str, Any]]:
        with self._lock:
            records = list(self.sandboxes.values())
        return [self.detail_json(r) for r in records
                if all(r.metadata.get(k) == v for k, v in metadata.items())]


def _handler_for(double: E2BDouble) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        pass

    Handler.double = double
    return Handler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True   # headers and body go in two writes: no 40 ms stall
    double: E2BDouble

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: pytest shows what matters."""

    # --- plumbing -------------------------------------------------------------------------

    def _reply(self, status: int, body: bytes = b"",
               content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, value: Any) -> None:
        self._reply(status, json.dumps(value).encode())

    def _route(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        self.double.requests.append((method, url.path))
        body = wire.read_body(self.headers, self.rfile)  # type: ignore[arg-type]
        injected = self.double.faults.take(method, url.path)
        if injected is not None:
            self._json(injected, {"code": injected, "message": "injected by the test double"})
            return
        query = dict(urllib.parse.parse_qsl(url.query))
        sandbox_id = self.headers.get("E2b-Sandbox-Id")
        if sandbox_id:
            self._envd(method, url.path, query, body, sandbox_id)
        else:
            self._control_plane(method, url.path, query, body)

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    # --- control plane ----------------------------------------------------------------------

    def _control_plane(self, method: str, path: str, query: dict[str, str],
                       body: bytes) -> None:
        if self.headers.get("X-API-Key") != self.double.api_key:
            self._json(401, {"code": 401, "message": "Invalid API key"})
            return
        parts = [p for p in path.split("/") if p]
        payload = json.loads(body or b"{}")
        if parts[:2] == ["v2", "sandboxes"] and len(parts) > 2:
            parts = parts[1:]   # /v2/sandboxes/{id}/connect: the same as without v2
        if method == "POST" and parts == ["v2", "sandboxes"]:
            self._json(*self.double.create(payload))
        elif method == "GET" and parts == ["v2", "sandboxes"]:
            wanted = dict(urllib.parse.parse_qsl(query.get("metadata", "")))
            self._json(200, self.double.listed(wanted))
        elif len(parts) >= 2 and parts[0] == "sandboxes":
            self._one_sandbox(method, parts[1], parts[2:], payload)
        else:
            self._json(404, {"code": 404, "message": f"no route {method} {path}"})

    def _one_sandbox(self, method: str, sandbox_id: str, rest: list[str],
                     payload: dict[str, Any]) -> None:
        record = self.double.find(sandbox_id)
        if record is None:
            self._json(404, {"code": 404, "message": f"sandbox {sandbox_id} not found"})
        elif method == "DELETE" and not rest:
            self.double.kill(sandbox_id)
            self._reply(204)
        elif method == "GET" and not rest:
            self._json(200, self.double.detail_json(record))
        elif method == "POST" and rest == ["timeout"]:
            self.double.set_timeout(sandbox_id, int(payload.get("timeout", 0)))
            self._reply(204)
        elif method == "POST" and rest == ["connect"]:
            self.double.set_timeout(sandbox_id, int(payload.get("timeout", 15)))
            self._json(200, self.double.detail_json(record))
        else:
            self._json(404, {"code": 404, "message": "no such route"})

    # --- envd -----------------------------------------------------------------------------

    def _envd(self, method: str, path: str, query: dict[str, str], body: bytes,
              sandbox_id: str) -> None:
        record = self.double.find(sandbox_id)
        if record is None or not record.vm.alive:
            # what E2B's edge answers for a sandbox that is gone
            self._json(502, {"code": 502, "message": "The sandbox was not found",
                             "sandboxId": sandbox_id})
            return
        vm = record.vm
        if path == "/health":
            self._reply(204)
        elif path == "/files" and method == "POST":
            self._upload(vm, query, body)
        elif path == "/files" and method == "GET":
            target = vm.host_path(query.get("path", ""))
            if target is None or not target.is_file():
                self._json(404, {"code": 404, "message": "file not found"})
            else:
                self._reply(200, target.read_bytes(), "application/octet-stream")
        elif path in ("/process.Process/Start", "/process.Process/Connect"):
            self._process_stream(vm, path.rsplit("/", 1)[1], wire.first_message(body))
        elif path.startswith("/process.Process/"):
            self._process_unary(vm, path.rsplit("/", 1)[1], json.loads(body or b"{}"))
        else:
            self._json(404, {"code": 404, "message": f"no envd route {path}"})

    def _upload(self, vm: MicroVM, query: dict[str, str], body: bytes) -> None:
        if self.headers.get("Content-Type") != "application/octet-stream":
            self._json(400, {"code": 400, "message": "the double takes octet-stream uploads"})
            return
        inside = query.get("path", "")
        target = vm.host_path(inside)
        if target is None:
            self._json(400, {"code": 400, "message": f"the double writes only under "
                                                     f"/home/user, not {inside}"})
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)
        for path in (target, *[p for p in target.parents if vm.home in p.parents]):
            vm.own(path)
        self._json(200, [{"name": target.name, "type": "file", "path": inside}])

    def _process_unary(self, vm: MicroVM, name: str, request: dict[str, Any]) -> None:
        if name == "List":
            self._json(200, {"processes": [
                {"pid": p.pid, "config": {"cmd": p.argv[0], "args": p.argv[1:]}}
                for p in vm.processes.values() if p.exit_code is None]})
            return
        pid = int((request.get("process") or {}).get("pid", 0))
        process = vm.processes.get(pid)
        if process is None or process.exit_code is not None:
            self._reply(*wire.error_body("not_found", f"process with pid {pid} not found"))
            return
        if name == "SendInput":
            data = base64.b64decode((request.get("input") or {}).get("stdin", ""))
            timeout_s = int(self.headers.get("Connect-Timeout-Ms") or 60_000) / 1000
            if not vm.send_stdin(process, data, timeout_s):
                self._reply(*wire.error_body("deadline_exceeded",
                                             "the process did not read its input"))
                return
        elif name == "CloseStdin":
            vm.close_stdin(process)
        elif name == "SendSignal":
            signal_name = request.get("signal")
            vm.signal(process, 9 if signal_name in ("SIGNAL_SIGKILL", 9) else 15)
        else:
            self._reply(*wire.error_body("unimplemented", f"the double has no {name}"))
            return
        self._json(200, {})

    def _process_stream(self, vm: MicroVM, name: str, request: dict[str, Any]) -> None:
        if name == "Start":
            config = request.get("process") or {}
            argv = [config.get("cmd", ""), *config.get("args", [])]
            try:
                process = vm.start(argv, dict(config.get("envs") or {}), config.get("cwd"),
                                   bool(request.get("stdin", False)))
            except OSError as exc:
                self._stream_error("unknown", f"cannot start {argv[0]}: {exc}")
                return
            start_at = 0
        else:
            pid = int((request.get("process") or {}).get("pid", 0))
            found = vm.processes.get(pid)
            if found is None:
                self._stream_error("not_found", f"process with pid {pid} not found")
                return
            process, start_at = found, len(found.events)
        self.send_response(200)
        self.send_header("Content-Type", "application/connect+json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._chunk(wire.envelope({"event": {"start": {"pid": process.pid}}}))
        self._follow(process, start_at)

    def _follow(self, process: GuestProcess, index: int) -> None:
        generation = self.double.faults.stream_generation
        last_sent = time.monotonic()
        while True:
            with process.changed:
                if index >= len(process.events):
                    process.changed.wait(0.2)
                events = process.events[index:]
            if (self.double.faults.stream_generation != generation
                    or any(event["ev"] == "vm_gone" for event in events)):
                self.close_connection = True   # dropped mid-stream: no end, no last chunk
                self.connection.close()
                return
            index += len(events)
            for event in events:
                if event["ev"] == "out":
                    self._chunk(wire.envelope({"event": {"data": {event["stream"]: event[
                        "data"]}}}))
                elif event["ev"] == "end":
                    code = int(event["code"])
                    status = f"signal: {-code}" if code < 0 else f"exit status {code}"
                    self._chunk(wire.envelope({"event": {"end": {
                        "exitCode": code if code >= 0 else -1, "exited": code >= 0,
                        "status": status}}}))
                    self._chunk(wire.end_of_stream())
                    self._chunk(b"")
                    return
            if not events and time.monotonic() - last_sent > KEEPALIVE_S:
                self._chunk(wire.envelope({"event": {"keepalive": {}}}))
            if events:
                last_sent = time.monotonic()

    def _stream_error(self, code: str, message: str) -> None:
        body = wire.end_of_stream(code, message)
        self._reply(200, body, "application/connect+json")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

