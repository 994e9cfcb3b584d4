"""The REPL agent that runs INSIDE every sandbox. Standard library only.

It speaks the frame protocol on the stdin/stdout it was started with, which it moves to
private descriptors at once (or, given ``--connect=<path>``, on a Unix socket the host
listens on); model code gets fd 0 = /dev/null and fds 1 and 2 = pipes that
a pump thread streams back as ``output`` frames, so ``print``, ``os.write(1, ...)``, C
extensions and child processes are all captured and capped.

Nothing here is a security boundary: model code runs in this very process and can forge
any frame. The host treats every frame as hostile. What the agent does is make the honest
path correct: persistent namespace, interrupts that keep state, answers, host calls as
plain Python functions.
"""

from __future__ import annotations

import array
import codecs
import contextlib
import errno
import fcntl
import itertools
import os
import select
import signal
import sys
import termios
import threading
import traceback
import types
from collections.abc import Callable
from typing import Any

if __package__ in (None, ""):  # run as a script inside a sandbox: siblings are top-level
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import protocol  # type: ignore[import-not-found]
else:
    from rlmbox.sandboxes import protocol

_OUTPUT_CHUNK = 64 * 1024
_DRAIN_LIMIT = 4 * 1024 * 1024
_MAX_ERROR_CHARS = 64 * 1024
_INJECTED_ERRORS = ("HostCallError", "PolicyDenied", "BudgetExceeded")


class HostCallError(Exception):
    """A host function failed; the message comes from the host."""


class PolicyDenied(HostCallError):
    """The policy refused this call."""


class BudgetExceeded(HostCallError):
    """A budget of the session tree is spent."""


_ERROR_TYPES: dict[str, type[Exception]] = {
    "PolicyDenied": PolicyDenied,
    "BudgetExceeded": BudgetExceeded,
    "ValueError": ValueError,
    "TypeError": TypeError,
    "KeyError": KeyError,
    "IndexError": IndexError,
}


class FrameIO:
    """The private protocol descriptors: locked frame writes, blocking frame reads."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self._read_fd = read_fd
        self._write_fd = write_fd
        self._decoder = protocol.FrameDecoder(protocol.HOST_FRAMES)
        self._lock = threading.Lock()

    def send(self, frame: dict[str, Any]) -> None:
        data = protocol.encode(frame)
        with self._lock:
            view = memoryview(data)
            while view:
                view = view[os.write(self._write_fd, view):]

    def recv(self) -> dict[str, Any]:
        while True:
            frame: dict[str, Any] | None = self._decoder.next_frame()
            if frame is not None:
                return frame
            try:
                data = os.read(self._read_fd, 1 << 20)
            except InterruptedError:
                continue
            if not data:
                os._exit(0)  # the host went away: nothing left to serve
            self._decoder.feed(data)


class OutputPump:
    """Streams fds 1 and 2 to the host as output frames, capped per cell and stream.

    One thread owns both pipes and the sync requests, so output of a cell is always sent
    before that cell's result frame.
    """

    def __init__(self, io: FrameIO, stdout_fd: int, stderr_fd: int) -> None:
        self._io = io
        self._fds = {stdout_fd: "stdout", stderr_fd: "stderr"}
        for fd in self._fds:
            os.set_blocking(fd, False)
        self._ctl_r, self._ctl_w = os.pipe()
        self._synced = threading.Event()
        self._state = threading.Lock()
        self._busy = False
        self._cell: str | None = None
        self._limit = 0
        self._sent = {"stdout": 0, "stderr": 0}
        self._dropped = {"stdout": 0, "stderr": 0}
        self._decoders = {name: codecs.getincrementaldecoder("utf-8")("replace")
                          for name in self._fds.values()}
        threading.Thread(target=self._run, name="rlmbox-output", daemon=True).start()

    def begin(self, cell_id: str, limit: int) -> None:
        with self._state:
            self._cell, self._limit = cell_id, limit
            self._sent = {"stdout": 0, "stderr": 0}
            self._dropped = {"stdout": 0, "stderr": 0}

    def finish(self) -> dict[str, int]:
        """Sends everything written so far, ends the cell; returns dropped bytes.

        Fast path: when both pipes are empty and the pump holds no data, nothing is in
        flight and no thread handoff is needed (the pump marks itself busy under the lock
        before it reads).
        """
        with self._state:
            if not self._busy and not any(_pending(fd) for fd in self._fds):
                self._cell = None
                return dict(self._dropped)
        self._synced.clear()
        os.write(self._ctl_w, b"s")
        self._synced.wait()
        with self._state:
            self._cell = None
            return dict(self._dropped)

    def _run(self) -> None:
        watched = [*self._fds, self._ctl_r]
        while True:
            try:
                ready, _, _ = select.select(watched, [], [])
            except InterruptedError:
                continue
            for fd in ready:
                if fd == self._ctl_r:
                    os.read(self._ctl_r, 64)
                    for out_fd in self._fds:
                        self._drain(out_fd, _DRAIN_LIMIT)
                    self._synced.set()
                else:
                    self._drain(fd, _OUTPUT_CHUNK)

    def _drain(self, fd: int, budget: int) -> None:
        with self._state:
            self._busy = True
        try:
            self._drain_unmarked(fd, budget)
        finally:
            with self._state:
                self._busy = False

    def _drain_unmarked(self, fd: int, budget: int) -> None:
        while budget > 0:
            try:
                data = os.read(fd, min(_OUTPUT_CHUNK, budget))
            except BlockingIOError:
                return
            if not data:
                return
            budget -= len(data)
            self._forward(self._fds[fd], data)

    def _forward(self, stream: str, data: bytes) -> None:
        with self._state:
            if self._cell is None:
                return  # written between cells (a background child): belongs to no cell
            room = max(0, self._limit - self._sent[stream])
            keep, lost = data[:room], len(data) - min(room, len(data))
            self._sent[stream] += len(keep)
            self._dropped[stream] += lost
            cell = self._cell
        text = self._decoders[stream].decode(keep) if keep else ""
        if text:
            self._io.send({"t": "output", "id": cell, "stream": stream, "data": text})


def _pending(fd: int) -> int:
    """Bytes waiting in a pipe (FIONREAD)."""
    buf = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, buf)
    return buf[0]


class Agent:
    """Owns the namespace and runs cells; host functions become plain callables."""

    def __init__(self, io: FrameIO, stdout_r: int, stderr_r: int) -> None:
        self.io = io
        self._stdout_r, self._stderr_r = stdout_r, stderr_r
        self.namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}
        self.injected: dict[str, Any] = {}
        self.pump: OutputPump | None = None
        self.confinement: dict[str, str] = {}
        self.output_limit = 1024 * 1024
        self.restricted: Callable[[dict[str, Any]], None] | None = None
        self._builtins: Any = __builtins__
        self._call_ids = itertools.count(1)
        self._call_lock = threading.Lock()
        self._in_cell = False
        self._answer: Any = None
        self._has_answer = False

    # --- host calls ---------------------------------------------------------------

    def call_host(self, fn: str, *args: Any, **kwargs: Any) -> Any:
        with self._call_lock:
            call_id = next(self._call_ids)
            try:
                self.io.send({"t": "call", "call": call_id, "fn": fn,
                              "args": list(args), "kwargs": kwargs})
            except protocol.FrameError as exc:
                raise TypeError(f"{fn}: arguments must be JSON values under the frame "
                                f"cap ({exc})") from None
            while True:
                frame = self.io.recv()
                if frame["t"] == "shutdown":
                    os._exit(0)
                if frame["t"] == "reply" and frame["call"] == call_id:
                    break
        if frame["ok"]:
            return frame.get("value")
        error = frame.get("error") or {}
        kind = _ERROR_TYPES.get(str(error.get("type")), HostCallError)
        raise kind(str(error.get("message", "host call failed")))

    def host_function(self, fn: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            return self.call_host(fn, *args, **kwargs)
        call.__name__ = call.__qualname__ = fn.rsplit(".", 1)[-1]
        call.__doc__ = f"Calls the host function {fn!r}; the host's policy decides."
        return call

    # --- answers ------------------------------------------------------------------

    def final(self, value: Any) -> None:
        self._answer, self._has_answer = value, True

    def final_var(self, name: str) -> None:
        if name not in self.namespace:
            raise NameError(f"FINAL_VAR: no variable named {name!r}")
        self.final(self.namespace[name])

    def show_vars(self) -> None:
        for name, value in sorted(self.namespace.items()):
            if name.startswith("_") or name in self.injected or name == "__builtins__":
                continue
            print(f"{name}: {type(value).__name__}")

    # --- lifecycle ----------------------------------------------------------------

    def init(self, frame: dict[str, Any]) -> dict[str, Any]:
        config = frame["config"]
        self.output_limit = int(config.get("output_limit", self.output_limit))
        for name in config.get("functions", []):
            self.injected[name.rsplit(".", 1)[-1]] = self.host_function(name)
        for name in config.get("tools", []):
            self.injected[name] = self.host_function(f"tool.{name}")
        self.injected.update({
            "FINAL": self.final, "FINAL_VAR": self.final_var, "SHOW_VARS": self.show_vars,
            **{name: _exception_class(name) for name in _INJECTED_ERRORS},
        })
        self.injected["context"] = self._load_context(config)
        if config.get("code_mode") == "restricted":
            import restricted_guards  # type: ignore[import-not-found]  # noqa: PLC0415
            allowed = frozenset(config.get("allowed_imports", []))
            restricted_guards.install(self.namespace, allowed)
            self._builtins = self.namespace["__builtins__"]   # the restricted set, kept
        if self.pump is None:   # not confined at start-up: do it now, still single-threaded
            self.confine(config)
        self._restore_injected()
        return {"t": "result", "id": frame["id"], "status": "ok", "has_answer": True,
                "answer": self.confinement}

    def confine(self, config: dict[str, Any]) -> None:
        """Applies Landlock and seccomp, then starts the output pump: Landlock binds only
        the calling thread, so it must come before any other thread exists."""
        self.confinement = _confine(config)
        self.pump = OutputPump(self.io, self._stdout_r, self._stderr_r)

    def _load_context(self, config: dict[str, Any]) -> Any:
        spec = config.get("context")
        if not spec:
            return None
        if config.get("context_mode") == "gated":
            import gated_context  # type: ignore[import-not-found]  # noqa: PLC0415
            return gated_context.GatedContext(self.call_host)
        with open(spec["path"], encoding="utf-8") as handle:
            if spec.get("kind") == "json":
                import json  # noqa: PLC0415
                return json.load(handle)
            return handle.read()

    def _restore_injected(self) -> None:
        self.namespace.update(self.injected)
        self.namespace["__builtins__"] = self._builtins

    def run_cell(self, frame: dict[str, Any]) -> dict[str, Any]:
        cell_id = frame["id"]
        assert self.pump is not None  # noqa: S101 - init always precedes exec
        self.pump.begin(cell_id, self.output_limit)
        self._answer, self._has_answer = None, False
        status, error = "ok", None
        signal.signal(signal.SIGINT, self._on_sigint)
        try:
            code = compile(frame["code"], "<cell>", "exec")
            self._in_cell = True
            try:
                exec(code, self.namespace)  # noqa: S102 - running model code is the job
            finally:
                self._in_cell = False
        except KeyboardInterrupt:
            status, error = "interrupted", "KeyboardInterrupt: the cell was interrupted"
        except BaseException as exc:
            status, error = "error", _format_error(exc)
        finally:
            signal.signal(signal.SIGINT, self._on_sigint)
        self._flush_streams()
        if status == "ok" and not self._has_answer:
            self._answer_from_dict()
        dropped = self.pump.finish()
        self._restore_injected()
        result: dict[str, Any] = {"t": "result", "id": cell_id, "status": status,
                                  "error": error, "dropped": dropped}
        if self._has_answer:
            result["has_answer"] = True
            result["answer"] = _jsonable(self._answer)
        return _fit_in_frame(result)

    def _answer_from_dict(self) -> None:
        answer = self.namespace.get("answer")
        if isinstance(answer, dict) and answer.get("ready") is True:
            self.final(answer.get("content"))

    def _on_sigint(self, signum: int, frame: types.FrameType | None) -> None:
        if self._in_cell:
            raise KeyboardInterrupt

    @staticmethod
    def _flush_streams() -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()

    def serve(self) -> None:
        self.io.send({"t": "ready", "version": protocol.PROTOCOL_VERSION, "pid": os.getpid()})
        while True:
            frame = self.io.recv()
            kind = frame["t"]
            if kind == "shutdown":
                self._flush_streams()
                os._exit(0)
            elif kind == "init":
                self.io.send(self.init(frame))
            elif kind == "exec":
                self.io.send(self.run_cell(frame))
            # a stray reply (its call already gave up) is dropped


def _exception_class(name: str) -> type[Exception]:
    return {"HostCallError": HostCallError, "PolicyDenied": PolicyDenied,
            "BudgetExceeded": BudgetExceeded}[name]


def _confine(config: dict[str, Any]) -> dict[str, str]:
    applied: dict[str, str] = {}
    if not (config.get("landlock") or config.get("seccomp")):
        return applied
    import confine  # type: ignore[import-not-found]  # noqa: PLC0415
    if config.get("landlock"):
        applied["landlock"] = confine.install_landlock(list(config.get("writable", ["/tmp"])))
    if config.get("seccomp"):
        applied["seccomp"] = confine.install_seccomp()
    return applied


def _format_error(exc: BaseException) -> str:
    """The traceback as model code should see it: its own frames, not the agent's."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != __file__]
    lines = ["Traceback (most recent call last):\n"] if frames else []
    lines += traceback.format_list(frames)
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines).rstrip()


def _fit_in_frame(result: dict[str, Any]) -> dict[str, Any]:
    """A result that cannot travel (an answer over the frame cap) becomes an error result."""
    if isinstance(result.get("error"), str) and len(result["error"]) > _MAX_ERROR_CHARS:
        result["error"] = result["error"][:_MAX_ERROR_CHARS] + "\n[error message truncated]"
    try:
        protocol.encode(result)
    except protocol.FrameError as exc:
        return {"t": "result", "id": result["id"], "status": "error",
                "dropped": result.get("dropped", {}),
                "error": f"the answer cannot be returned: {exc}; keep it in a variable and "
                         "return a smaller part"}
    return result


def _jsonable(value: Any) -> Any:
    try:
        protocol.encode({"v": value})
    except (protocol.FrameError, RecursionError):
        return repr(value) if not isinstance(value, str) else value
    return value


def _take_private_fds(connect: str | None = None) -> tuple[FrameIO, int, int]:
    """Moves the protocol off fds 0/1 and gives model code /dev/null and two pipes.

    With ``connect`` (a Unix socket path the host listens on) the protocol runs over that
    socket instead of fds 0/1, which then carry nothing. Returns the frame I/O and the
    read ends of the stdout and stderr pipes.
    """
    if connect is not None:
        read_fd = write_fd = _connect(connect)
    else:
        read_fd, write_fd = os.dup(0), os.dup(1)   # os.dup makes them non-inheritable
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    read_ends = []
    for target in (1, 2):
        pipe_r, pipe_w = os.pipe()   # both ends non-inheritable; dup2 makes target inheritable
        os.dup2(pipe_w, target)
        os.close(pipe_w)
        read_ends.append(pipe_r)
    return FrameIO(read_fd, write_fd), read_ends[0], read_ends[1]


def _connect(path: str) -> int:
    """A connected stream socket to the host's per-sandbox listener (non-inheritable).

    Done before any confinement: the host created the listener before this container
    started, so one attempt suffices, and an open connection needs no Landlock right.
    """
    import socket  # noqa: PLC0415 - only the socket transport needs it

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as exc:
        os.write(2, f"rlmbox agent: cannot connect to {path}: {exc}\n".encode())
        os._exit(4)
    return sock.detach()


def _connect_path(argv: list[str]) -> str | None:
    """``--connect=<path>`` from the backend: speak on that Unix socket, not on fds 0/1."""
    for arg in argv:
        if arg.startswith("--connect="):
            return arg.removeprefix("--connect=")
    return None


def _preload() -> None:
    """Imports what ``init`` may need before saying ready, so a warm sandbox's init is
    only the policy-specific work (ctypes alone costs milliseconds to import)."""
    for name in ("confine", "gated_context", "restricted_guards", "json"):
        with contextlib.suppress(ImportError):   # an optional layer this bundle lacks
            __import__(name)


def _startup_confinement(argv: list[str]) -> dict[str, Any] | None:
    """``--confine=<JSON object>`` from the backend: the same keys as ``init``'s config."""
    for arg in argv:
        if arg.startswith("--confine="):
            import json  # noqa: PLC0415

            value = json.loads(arg.removeprefix("--confine="))
            return value if isinstance(value, dict) else None
    return None


def _reap_as_init() -> None:
    """As pid 1 (a container without an init), fork: the child serves, this process reaps
    orphans (zombies count against the pids limit) and forwards interrupts. Reaping only
    our own children never steals a wait status from model code's ``subprocess``."""
    child = os.fork()
    if child == 0:
        return
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda sig, _frame: os.kill(child, sig))
    for fd in (0, 1):
        os.close(fd)   # only the serving child speaks the protocol
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(0)
        except InterruptedError:
            continue
        if pid == child:
            os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def main() -> None:
    if os.getpid() == 1:
        _reap_as_init()
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # until a cell runs: nothing to interrupt
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    io, stdout_r, stderr_r = _take_private_fds(_connect_path(sys.argv[1:]))
    sys.stdout = open(1, "w", encoding="utf-8", errors="backslashreplace",  # noqa: SIM115
                      closefd=False, buffering=1)
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace",  # noqa: SIM115
                      closefd=False, buffering=1)
    _preload()
    agent = Agent(io, stdout_r, stderr_r)
    startup = _startup_confinement(sys.argv[1:])
    if startup is not None:   # the backend knows the confinement: apply it before ready
        agent.confine(startup)
    try:
        agent.serve()
    except protocol.FrameError as exc:
        os.write(2, f"rlmbox agent: protocol error from host: {exc}\n".encode())
        os._exit(3)
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            os._exit(0)
        raise


if __name__ == "__main__":
    main()
