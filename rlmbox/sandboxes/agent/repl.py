"""The REPL: the namespace model code runs in, host functions as callables, answers.

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

import _signal  # type: ignore[import-not-found]  # signal's C core (no stub): no enum work
import builtins
import contextlib
import itertools
import os
import signal
import sys
import threading
import traceback
import types
import warnings
from collections.abc import Callable

from rlmbox.sandboxes import cell_code, protocol
from rlmbox.sandboxes.agent import context_file, files
from rlmbox.sandboxes.agent.frame_io import FrameIO
from rlmbox.sandboxes.agent.pump import OutputPump

TYPE_CHECKING = False   # typing costs ~2 ms at every sandbox start: for mypy only
if TYPE_CHECKING:
    from typing import Any

_MAX_ERROR_CHARS = 64 * 1024
# the agent's own frames (guards, gated context, this file) are not the user's business
_BUNDLE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))) + os.sep
_INJECTED_ERRORS = ("HostCallError", "PolicyDenied", "BudgetExceeded")


class HostCallError(Exception):
    """A host function failed; the message comes from the host."""

    # injected into the namespace like a builtin: tracebacks name it without a module path
    __module__ = "builtins"


class PolicyDenied(HostCallError):
    """The policy refused this call."""

    __module__ = "builtins"


class BudgetExceeded(HostCallError):
    """A budget of the session tree is spent."""

    __module__ = "builtins"


_ERROR_TYPES: dict[str, type[Exception]] = {
    "PolicyDenied": PolicyDenied,
    "BudgetExceeded": BudgetExceeded,
    "ValueError": ValueError,
    "TypeError": TypeError,
    "KeyError": KeyError,
    "IndexError": IndexError,
    "TimeoutError": TimeoutError,
}


class Agent:
    """Owns the namespace and runs cells; host functions become plain callables."""

    def __init__(self, io: FrameIO, stdout_r: int, stderr_r: int) -> None:
        self.io = io
        self._stdout_r, self._stderr_r = stdout_r, stderr_r
        # the builtins each cell starts from, and the one copy cells see (_restore_injected)
        self._builtins: dict[str, Any] = dict(vars(builtins))
        self._cell_builtins: dict[str, Any] = dict(self._builtins)
        self.namespace: dict[str, Any] = {"__name__": "__main__",
                                          "__builtins__": self._cell_builtins}
        self.injected: dict[str, Any] = {}
        self.pump: OutputPump | None = None
        self.confinement: dict[str, str] = {}
        self.output_limit = 1024 * 1024
        self.output_stop = 16 * self.output_limit
        self.restricted: Callable[[dict[str, Any]], None] | None = None
        self._call_ids = itertools.count(1)
        self._call_lock = threading.Lock()
        # read under _call_lock: host calls may start (a cell runs); see _close_calls
        self._calls_open = False
        self._in_cell = False
        # a SIGINT landed outside a cell since the last one began: only then can the host's
        # interrupt frame for the next cell be waiting (it is written before the SIGINT)
        self._sigint_outside = False
        self._answer: Any = None
        self._has_answer = False
        self._ascii_chars: int | None = None   # an ASCII context's length, said before init
        self._initialized = False
        self._to_prepare: list[str] = []   # init's cells to compile once it has replied
        self._prepared: dict[str, types.CodeType] = {}   # by source, each used once

    # --- host calls ---------------------------------------------------------------

    def call_host(self, fn: str, *args: Any, **kwargs: Any) -> Any:
        with self._call_lock:
            if not self._calls_open:
                raise RuntimeError(f"{fn}: host functions answer only while a cell runs "
                                   f"(this thread outlived the cell that started it)")
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

    def show_vars(self) -> str:
        """rlms' ``SHOW_VARS() -> str``: the model's variables by type name; ``answer`` and
        the names rlmbox injects are left out."""
        available = {name: type(value).__name__ for name, value in sorted(self.namespace.items())
                     if not (name.startswith("_") or name in self.injected or name == "answer")}
        if not available:
            return "No variables created yet. Use ```repl``` blocks to create variables."
        return f"Available variables: {available}"

    # --- lifecycle ----------------------------------------------------------------

    def init(self, frame: dict[str, Any]) -> dict[str, Any]:
        self._initialized = True
        config = frame["config"]
        self.output_limit = int(config.get("output_limit", self.output_limit))
        self.output_stop = int(config.get("output_stop", 16 * self.output_limit))
        for name in config.get("functions", []):
            self.injected[name.rsplit(".", 1)[-1]] = self.host_function(name)
        for name in config.get("tools", []):
            self.injected[name] = self.host_function(f"tool.{name}")
        self.injected.update({
            "FINAL": self.final, "FINAL_VAR": self.final_var, "SHOW_VARS": self.show_vars,
            **{name: _exception_class(name) for name in _INJECTED_ERRORS},
        })
        self.injected["context"] = self._load_context(config)
        self._to_prepare = [c for c in config.get("prepare", []) if isinstance(c, str)]
        _use_environment(config.get("environment"))
        if config.get("code_mode") == "restricted":
            from rlmbox.sandboxes.agent import restricted_guards  # noqa: PLC0415
            allowed = frozenset(config.get("allowed_imports", []))
            restricted_guards.install(self.namespace, allowed)
            self._builtins = dict(self.namespace["__builtins__"])   # the restricted set, kept
        if self.pump is None:   # not confined at start-up: do it now, still single-threaded
            self.confine(config)
        _set_up_session(config.get("session_env"), config.get("cwd"))   # under the walls
        self._restore_injected()
        return {"t": "result", "id": frame["id"], "status": "ok", "has_answer": True,
                "answer": self.confinement}

    def confine(self, config: dict[str, Any]) -> None:
        """Applies Landlock and seccomp, then starts the output pump: Landlock binds only
        the calling thread, so it must come before any other thread exists."""
        self.confinement = _confine(config)
        self.pump = OutputPump(self.io, self._stdout_r, self._stderr_r,
                               on_flood=self._interrupt_main)

    def _load_context(self, config: dict[str, Any]) -> Any:
        spec = config.get("context")
        ascii_chars, self._ascii_chars = self._ascii_chars, None   # for this init only
        if not spec:
            return None
        if config.get("context_mode") == "gated":
            from rlmbox.sandboxes.agent import gated_context  # noqa: PLC0415
            return gated_context.GatedContext(self.call_host)
        return context_file.load(spec["path"], spec.get("kind", "str"), ascii_chars)

    def _prepare(self) -> None:
        """Compiles the cells ``init`` named, after its reply: the host is still recording
        the session's start, so the first cell's compile is off its path. Only compiled,
        never run; a source that does not compile is left to its cell to report."""
        sources, self._to_prepare = self._to_prepare, []
        for source in sources:
            with contextlib.suppress(Exception), warnings.catch_warnings(record=True) as said:
                warnings.simplefilter("always")
                code = cell_code.compile_source(source)
                if not said:   # the compiler's warnings belong to the cell's own stderr:
                    self._prepared[source] = code   # such a cell is compiled in it

    def _restore_injected(self) -> None:
        """The names rlmbox defines, and the builtins: cells see a copy, refilled here, so
        a cell that edits ``__builtins__`` breaks neither the agent nor the next cell (nor
        the functions it defined, which keep that same copy)."""
        self.namespace.update(self.injected)
        self._cell_builtins.clear()
        self._cell_builtins.update(self._builtins)
        self.namespace["__builtins__"] = self._cell_builtins

    def _bind_added_tools(self, names: list[Any]) -> None:
        """Tools the host registered since the last cell: restored before every cell from
        now on, like those of ``init`` (the host decides each call, whatever the name)."""
        for name in names:
            self.injected[str(name)] = self.host_function(f"tool.{name}")
        if names:
            self._restore_injected()

    def run_cell(self, frame: dict[str, Any]) -> bytes:
        """Runs a cell; returns what goes to the host in one write: the output frames
        still pending when it ended, then its result frame."""
        cell_id = frame["id"]
        if self.pump is None:   # the host always sends init first; refuse rather than crash
            return _encode_result({"t": "result", "id": cell_id, "status": "error",
                                   "error": "RuntimeError: exec before init"})
        self.pump.begin(cell_id, self.output_limit, self.output_stop)
        self._answer, self._has_answer = None, False
        status, error = "ok", None
        self._bind_added_tools(frame.get("tools") or [])
        self._own_sigint()
        try:
            prepared = (self._prepared.pop(frame["code"], None)
                        if "compiled" not in frame else None)
            code = prepared or cell_code.load(frame)
            self._in_cell = True   # a SIGINT from here on raises; one before it was
            try:                   # ignored, and the host's interrupt frame tells of it
                if self._sigint_outside:   # else no frame to look for: no syscall a cell
                    self._sigint_outside = False
                    if self.io.interrupted_before(cell_id):
                        raise KeyboardInterrupt
                # calls open once the look is done: a thread the last cell left, calling,
                # would read (and drop) the interrupt frame it looks for
                self._calls_open = True
                exec(code, self.namespace)  # noqa: S102 - running model code is the job
            finally:
                self._in_cell = False
        except KeyboardInterrupt:
            status, error = "interrupted", "KeyboardInterrupt: the cell was interrupted"
            if self.pump.flooded:
                error = (f"KeyboardInterrupt: the cell's output passed limits.output_stop_bytes "
                         f"({self.output_stop} bytes) and the cell was stopped")
        except BaseException as exc:
            status, error = "error", _format_error(exc)
        finally:   # the cell may have replaced it: a late interrupt must not kill the agent
            self._own_sigint()
        self._close_calls()   # its threads' calls in flight end before its output does
        self._flush_streams()
        if status == "ok" and not self._has_answer:
            try:
                self._answer_from_dict()
            except Exception as exc:   # model code's answer object: its get() may raise
                status, error = "error", _format_error(exc)
        dropped, output_tail = self.pump.finish()
        self._restore_injected()
        result: dict[str, Any] = {"t": "result", "id": cell_id, "status": status,
                                  "error": error, "dropped": dropped}
        if self._has_answer:
            result["has_answer"] = True
            result["answer"] = self._answer
        return output_tail + _encode_result(result)

    def _close_calls(self) -> None:
        """Before a cell's result: a call another thread has in flight ends first (the host
        answers every call it reads before the result), and none starts after. Threads
        read the stream only inside their calls, one at a time, so between cells none does:
        one that outlived its cell read the next cell's exec frame and dropped it, and that
        cell never began (test_leftover_threads.py)."""
        self._calls_open = False   # first: a thread calling in a loop cannot starve this
        with self._call_lock:     # the call in flight, if any, is answered
            pass

    def _own_sigint(self) -> None:
        """Makes :meth:`_on_sigint` SIGINT's handler, in the kernel too, every time: a cell
        may have set another through libc, behind Python's record of it (which would then
        still name ours). ``_signal.signal`` is the C call, ~0.4 µs with its syscall;
        ``signal.signal`` adds ~5 µs of enum conversion, twice a cell."""
        _signal.signal(signal.SIGINT, self._on_sigint)

    def _answer_from_dict(self) -> None:
        answer = self.namespace.get("answer")
        if isinstance(answer, dict) and answer.get("ready") is True:
            self.final(answer.get("content"))

    @staticmethod
    def _interrupt_main() -> None:
        """The pump thread stops a flooding cell as the host would: SIGINT to the cell."""
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    def _on_sigint(self, signum: int, frame: types.FrameType | None) -> None:
        if not self._in_cell:
            self._sigint_outside = True
            return
        if self.io.busy:   # mid-frame: raised once the frame is whole (frame_io.py)
            self.io.interrupted = True
            return
        raise KeyboardInterrupt

    @staticmethod
    def _flush_streams() -> None:
        for stream in (sys.stdout, sys.stderr):   # a cell may have replaced either one
            with contextlib.suppress(Exception):
                stream.flush()

    def serve(self) -> None:
        # ours before the host can send a cell (it waits for ready): main() starts with
        # SIGINT ignored, and a SIGINT ignored by SIG_IGN is not noted, so the interrupt
        # frame of a first cell interrupted as it starts was never looked for
        self._own_sigint()
        self.io.send({"t": "ready", "version": protocol.PROTOCOL_VERSION, "pid": os.getpid()})
        while True:
            frame = self.io.recv()
            kind = frame["t"]
            if kind == "shutdown":
                self._flush_streams()
                os._exit(0)
            elif kind == "init":
                try:
                    reply = self.init(frame)
                except Exception as exc:   # the host refuses the session with this reason
                    reply = {"t": "result", "id": frame["id"], "status": "error",
                             "error": _format_error(exc)}
                self.io.send(reply)
                self._prepare()
            elif kind == "exec":
                self.io.send_encoded(self.run_cell(frame))
            elif kind == "file":
                self.io.send(files.handle(frame))
            elif kind == "reserve" and not self._initialized:   # no reply
                self._ascii_chars = frame["chars"]
            # a stray reply (its call already gave up) is dropped


def _use_environment(environment: Any) -> None:
    """Puts the policy's read-only package directory on ``sys.path``, once it is known
    to match this interpreter (its compiled parts would not load in another)."""
    if not isinstance(environment, dict):
        return
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if environment.get("python") != here:
        raise RuntimeError(f"the package environment was built for Python "
                           f"{environment.get('python')}; this sandbox runs {here}")
    site = str(environment.get("site"))
    if site in sys.path:
        return
    # after the standard library, before the interpreter's own site/dist-packages: the
    # policy's pinned version wins over whatever the image or the host happens to ship
    shipped = [i for i, entry in enumerate(sys.path)
               if entry.endswith(("site-packages", "dist-packages"))]
    sys.path.insert(shipped[0] if shipped else len(sys.path), site)


def _set_up_session(env: Any, cwd: Any) -> None:
    """The policy's variables and working directory, created if missing (a path outside
    the writable area cannot be, and the session is refused with the reason)."""
    if isinstance(env, dict):
        os.environ.update({str(k): str(v) for k, v in env.items()})
    if isinstance(cwd, str):
        os.makedirs(cwd, exist_ok=True)
        os.chdir(cwd)


def _exception_class(name: str) -> type[Exception]:
    return {"HostCallError": HostCallError, "PolicyDenied": PolicyDenied,
            "BudgetExceeded": BudgetExceeded}[name]


def _confine(config: dict[str, Any]) -> dict[str, str]:
    applied: dict[str, str] = {}
    if not (config.get("landlock") or config.get("seccomp")):
        return applied
    from rlmbox.sandboxes.process import confine  # noqa: PLC0415
    if config.get("landlock"):
        applied["landlock"] = confine.install_landlock(list(config.get("writable", ["/tmp"])))
    if config.get("seccomp"):
        applied["seccomp"] = confine.install_seccomp()
    return applied


def _format_error(exc: BaseException) -> str:
    """The traceback as model code should see it: its own frames, not the agent's."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith(_BUNDLE_ROOT)]
    lines = ["Traceback (most recent call last):\n"] if frames else []
    lines += traceback.format_list(frames)
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines).rstrip()


def _encode_result(result: dict[str, Any]) -> bytes:
    """The result frame, encoded once; one that cannot travel (an answer over the frame
    cap) becomes an error result."""
    if isinstance(result.get("error"), str) and len(result["error"]) > _MAX_ERROR_CHARS:
        result["error"] = result["error"][:_MAX_ERROR_CHARS] + "\n[error message truncated]"
    if "answer" in result:   # most answers encode as they are: one encoding, not two
        try:
            data = protocol.encode(result)
            _check_depth(data, result)
        except (protocol.FrameError, RecursionError):
            result["answer"] = _jsonable(result["answer"])
        else:
            return data
    try:
        return protocol.encode(result)
    except protocol.FrameError as exc:
        return protocol.encode({
            "t": "result", "id": result["id"], "status": "error",
            "dropped": result.get("dropped", {}),
            "error": f"the answer cannot be returned: {exc}; keep it in a variable and "
                     "return a smaller part"})


def _jsonable(value: Any) -> Any:
    try:
        _check_depth(protocol.encode({"v": value}), [value])   # [value]: its depth there
    except (protocol.FrameError, RecursionError):
        if isinstance(value, str):
            return value
        try:
            return repr(value)
        except Exception:   # a __repr__ that raises, an int over the digit limit
            return f"<an answer of type {type(value).__name__} that has no repr>"
    return value


def _check_depth(data: bytes, value: object) -> None:
    """Raises FrameError when ``value`` nests deeper than the host accepts (it refuses
    the whole frame, and the session with it). The walk is skipped when ``data``, its
    encoding, holds too few brackets to nest that deep, as most answers do."""
    if data.count(b"[") + data.count(b"{") > protocol.MAX_DEPTH:
        protocol.check_values(value)
