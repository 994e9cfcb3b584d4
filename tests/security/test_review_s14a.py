"""Hostile review s14a of the agent's start path (214a521, 43cf259, 5271e6d).

Promises attacked: before ``ready`` the agent does what must precede model code
(descriptors, Landlock, seccomp, pump), so the first cell of a cold session runs confined
on every backend; the idle warm-up (``agent/idle_warmup.py``) runs only between frames,
after ``ready`` and before the first cell, never consuming, reordering or delaying a frame
for long, and a SIGINT during it reaches no cell; what it would have imported is imported at
first use, so a first cell sent at once reports its errors as a warmed one does; a pooled
sandbox handed out while a step runs serves its session normally. Throughout, the host
treats every frame as hostile: a cell that poisons ``sys.modules`` so that the agent's
lazy imports answer for it may break its own sandbox, never hang or crash the host.

Real sandboxes (process; docker-runc and docker-runsc where the path differs: Docker's
agent confines at ``init`` and warms before ``ready``), and the bare agent over pipes for
the frame-level timing cases.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from rlmbox.errors import FileTransferRefused, SandboxError, SessionError
from rlmbox.runtime import session_files
from rlmbox.runtime.runtime import Runtime
from rlmbox.sandboxes import protocol
from rlmbox.sandboxes.bundle import write_bundle

from .harness import Runtimes, exec_bounded, policy_yaml, run_json, watched_session

BOUND_S = 30.0
#: the grace of the idle warm-up under review (reverted after this review: the agent imports
#: what it needs before ``ready`` again); the attacks keep their delays around it
GRACE_S = 0.05
FILES_RULES = [{"id": "permit-llm", "effect": "permit", "function": "llm_query"},
               {"id": "permit-files", "effect": "permit", "function": "files.*"}]

# a first cell's view of its walls: seccomp mode, no_new_privs, and a write outside the
# writable area (the host-side path is checked after, too)
CONFINED_PROBE = """
import json, os, sys
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines()
              if ":" in line)
wrote = None
for target in ({outside!r}, "/etc/s14a-probe", "/usr/s14a-probe"):
    try:
        with open(target, "w") as fh:
            fh.write("escaped")
        wrote = target
        break
    except OSError:
        pass
try:
    import socket
    socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
    inet = True
except OSError:
    inet = False
print(json.dumps({{"inet": inet, "seccomp": status.get("Seccomp", "").strip(),
                  "nnp": status.get("NoNewPrivs", "").strip(), "wrote": wrote,
                  "warm": sorted(m for m in ("traceback", "linecache")
                                 if m in sys.modules)}}))
"""


# --- confinement before the first model code --------------------------------------------

@pytest.mark.parametrize("backend", ["process", "docker-runc", "docker-runsc"])
def test_the_first_cell_of_a_cold_session_sent_at_once_runs_confined(
        runtimes: Runtimes, backend: str, tmp_path: Path) -> None:
    """The first cell, sent the moment ``session()`` returns (inside the warm-up's grace on
    the process backend), already runs under rlmbox's seccomp filter (an inet socket is
    refused, which Docker's own profile allows) with no_new_privs and cannot write
    outside its area. On Docker the confinement is applied at ``init``, before it."""
    outside = tmp_path / "escaped-s14a"
    rt = runtimes()
    with watched_session(rt) as (session, _):
        seen = run_json(session, CONFINED_PROBE.format(outside=str(outside)))
    assert seen["wrote"] is None, seen
    assert not outside.exists()
    assert seen["seccomp"] == "2", seen
    assert seen["inet"] is False, seen   # rlmbox's filter refuses every inet socket
    if backend != "docker-runsc":   # gVisor's /proc has no NoNewPrivs line
        assert seen["nnp"] == "1", seen


# --- the first cell's error report ----------------------------------------------------------

FAILING = "def f(n):\n    return 1 / n\n\nx = 1\nf(0)\n"
SYNTAX = "x = (1,\ny = 2\n"


@pytest.mark.parametrize("backend", ["process", "docker-runc", "docker-runsc"])
@pytest.mark.parametrize("code", [FAILING, SYNTAX], ids=["zerodivision", "syntaxerror"])
def test_a_first_cell_sent_at_once_reports_its_error_as_a_warmed_one_does(
        runtimes: Runtimes, code: str) -> None:
    """Cold: the cell follows ``session()`` at once (traceback not yet imported on the
    process backend); warmed: it follows a pause well past the grace. The two reports
    are the same, name the cell's own lines and none of the agent's frames."""
    rt = runtimes()
    with watched_session(rt) as (session, _):
        cold = exec_bounded(session, code, BOUND_S)
    with watched_session(rt) as (session, _):
        time.sleep(20 * GRACE_S)
        warm = exec_bounded(session, code, BOUND_S)
    assert cold.status == warm.status == "error", (cold, warm)
    assert cold.error == warm.error
    assert cold.error is not None
    assert "sandboxes" not in cold.error, cold.error
    assert "repl.py" not in cold.error, cold.error
    if code is FAILING:
        assert "line 2, in f" in cold.error, cold.error
        assert "ZeroDivisionError" in cold.error, cold.error
    else:
        assert "SyntaxError" in cold.error, cold.error


# --- SIGINT while a warm-up step runs --------------------------------------------------------

@pytest.mark.parametrize("backend", ["process", "docker-runc"])
def test_sigints_during_the_warm_up_reach_no_cell(runtimes: Runtimes) -> None:
    """Raw SIGINTs (the backend's own interrupt, no interrupt frame) over the whole
    warm-up window after ``session()``: the agent survives and its first cell is not
    interrupted (it looks for an interrupt frame, finds none, runs)."""
    rt = runtimes()
    with watched_session(rt) as (session, _):
        end = time.monotonic() + 6 * GRACE_S
        sent = 0
        while time.monotonic() < end:
            session.sandbox.interrupt()
            sent += 1
            time.sleep(0.003)
        result = exec_bounded(session, "print('ran')", BOUND_S)
        second = exec_bounded(session, "print('again')", BOUND_S)
    assert sent > 10
    assert (result.status, result.stdout) == ("ok", "ran\n"), result
    assert (second.status, second.stdout) == ("ok", "again\n"), second


# --- a pooled sandbox handed out while a step runs --------------------------------------------

@pytest.mark.parametrize("backend", ["process", "docker-runc"])
def test_pooled_sandboxes_taken_across_the_warm_up_serve_clean_sessions(
        backend: str, tmp_path: Path) -> None:
    """Each sandbox is taken from a pool of one at a delay spread over the grace and the
    steps after it; every session's first cell runs, fails and reports as a cold one, and
    its namespace holds nothing the warm-up made."""
    path = tmp_path / "policy.yaml"
    path.write_text(policy_yaml(backend))
    rt = Runtime(policy=path, audit_dir=tmp_path / "audit", pool_size=1)
    try:
        outcomes = []
        for delay in (0.0, 0.02, 0.045, 0.05, 0.055, 0.06, 0.07, 0.09, 0.2):
            assert rt.warm_up(timeout=30)
            time.sleep(delay)
            with watched_session(rt) as (session, _):
                probe = exec_bounded(session, "import json\nprint(json.dumps(sorted(k for k "
                                              "in globals() if not k.startswith('__'))))",
                                     BOUND_S)
                assert probe.status == "ok", probe
                assert probe.stderr == "", (delay, probe.stderr)   # no step's warning
                names = json.loads(probe.stdout)
                failed = exec_bounded(session, FAILING, BOUND_S)
                outcomes.append((delay, names, failed.status, failed.error))
        for delay, names, status, error in outcomes:
            assert "json" in names, (delay, names)
            assert not {"f", "x", "warm_compiler", "_SAMPLE"} & set(names), (delay, names)
            assert status == "error", (delay, status)
            assert error is not None
            assert "line 2, in f" in error, (delay, error)
            assert "sandboxes" not in error, (delay, error)
    finally:
        rt.close()


# --- init arriving during a step: context, files, restricted guards -------------------------

@pytest.mark.parametrize("backend", ["process"])
@pytest.mark.parametrize("delay", [0.0, 0.05, 0.06, 0.2])
def test_a_transfer_and_a_context_arriving_across_the_warm_up_are_served(
        runtimes: Runtimes, delay: float) -> None:
    """A context (``context_file`` imported at init or by the warm-up), then a file
    written and read back (``files`` imported at first use or ahead), at delays across the
    grace: every frame answered, in order, with the right bytes."""
    rt = runtimes(rules=FILES_RULES)
    with watched_session(rt, context="the context s14a") as (session, _):
        time.sleep(delay)
        session.write_file("/tmp/s14a.txt", b"payload-s14a")
        time.sleep(delay)
        assert session.read_file("/tmp/s14a.txt") == b"payload-s14a"
        result = exec_bounded(session, "print(context, open('/tmp/s14a.txt').read())",
                              BOUND_S)
    assert (result.status, result.stdout) == ("ok", "the context s14a payload-s14a\n"), result


# --- poisoned lazy imports: the host must hold ----------------------------------------------

POISON_TRACEBACK = {
    "none": "import sys\nsys.modules['traceback'] = None\nraise ValueError('boom')\n",
    "raises": ("import sys, types\nm = types.ModuleType('traceback')\n"
               "def extract_tb(tb):\n    raise MemoryError('poisoned')\n"
               "m.extract_tb = extract_tb\nsys.modules['traceback'] = m\n"
               "raise ValueError('boom')\n"),
    "not_str": ("import sys, types\nm = types.ModuleType('traceback')\n"
                "m.extract_tb = lambda tb: []\nm.format_list = lambda f: [object()]\n"
                "m.format_exception_only = lambda t, e: [b'bytes']\n"
                "sys.modules['traceback'] = m\nraise ValueError('boom')\n"),
    "huge": ("import sys, types\nm = types.ModuleType('traceback')\n"
             "m.extract_tb = lambda tb: []\nm.format_list = lambda f: []\n"
             "m.format_exception_only = lambda t, e: ['E' * 20_000_000]\n"
             "sys.modules['traceback'] = m\nraise ValueError('boom')\n"),
    "hangs": ("import sys, types, time\nm = types.ModuleType('traceback')\n"
              "def extract_tb(tb):\n    while True:\n        time.sleep(0.05)\n"
              "m.extract_tb = extract_tb\nsys.modules['traceback'] = m\n"
              "raise ValueError('boom')\n"),
}


@pytest.mark.parametrize("backend", ["process", "docker-runc"])
@pytest.mark.parametrize("kind", sorted(POISON_TRACEBACK))
def test_a_first_cell_that_poisons_the_error_report_cannot_hold_the_host(
        runtimes: Runtimes, kind: str) -> None:
    """The first cell of a cold session replaces ``traceback`` in ``sys.modules`` and
    fails: the agent imports the poison where it reports the error (since 214a521 it is
    imported at use, not bound at start). The sandbox may break itself; the host returns
    within its bound with a result or a documented session error, and the next session of
    the runtime is unharmed."""
    rt = runtimes(limits={"cell_timeout_s": 3, "interrupt_grace_s": 1})
    started = time.monotonic()
    with watched_session(rt) as (session, _):
        try:
            result = exec_bounded(session, POISON_TRACEBACK[kind], BOUND_S)
        except (SessionError, SandboxError):
            pass
        else:
            assert result.status in {"error", "killed", "timeout", "interrupted"}, result
            if result.status == "error":
                assert result.error is not None
                assert len(result.error) < 100_000
    assert time.monotonic() - started < BOUND_S
    with watched_session(rt) as (session, _):
        assert exec_bounded(session, "print(6 * 7)", BOUND_S).stdout == "42\n"


POISON_FILES = """
import sys, types, base64
fake = types.ModuleType("rlmbox.sandboxes.agent.files")
def handle(frame):
{body}
fake.handle = handle
real = sys.modules.get("rlmbox.sandboxes.agent.files")
if real is not None:   # the agent holds the module it imported at start: patch it too
    real.handle = handle
sys.modules["rlmbox.sandboxes.agent.files"] = fake
import rlmbox.sandboxes.agent as pkg
pkg.__dict__.pop("files", None)   # so `from ... import files` takes sys.modules' entry
"""
FILES_ANSWERS = {
    "other_id": '    return {"t": "result", "id": "c-other", "status": "ok", "error": None}',
    "output_frame": '    return {"t": "output", "id": frame["id"], "stream": "stdout", '
                    '"data": "x"}',
    "bad_answer": '    return {"t": "result", "id": frame["id"], "status": "ok", '
                  '"has_answer": True, "answer": {"size": -1, "data": 5}}',
    "oversize": '    return {"t": "result", "id": frame["id"], "status": "ok", '
                '"has_answer": True, "answer": {"size": 2**62, '
                '"data": base64.b64encode(b"x" * 4096).decode()}}',
    "raises": '    raise SystemExit(0)',
}


@pytest.mark.parametrize("backend", ["process"])
@pytest.mark.parametrize("kind", sorted(FILES_ANSWERS))
def test_a_poisoned_file_transfer_module_is_refused_by_the_host(
        runtimes: Runtimes, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cell makes the agent's lazily imported ``files`` module its own; the next
    ``read_file`` gets its answer. The host refuses it (FileTransferRefused) or reports the
    dead session, within its bound (a transfer never answered is killed after
    ``CHUNK_TIMEOUT_S``, here 5 s), and stays usable for the next session."""
    monkeypatch.setattr(session_files, "CHUNK_TIMEOUT_S", 5.0)
    rt = runtimes(rules=FILES_RULES)
    box: dict[str, Any] = {}
    with watched_session(rt) as (session, _):
        poison = exec_bounded(session, POISON_FILES.format(body=FILES_ANSWERS[kind]),
                              BOUND_S)
        assert poison.status == "ok", poison

        def read() -> None:
            try:
                box["data"] = session.read_file("/tmp/any")
            except BaseException as exc:   # judged below
                box["exc"] = exc

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(BOUND_S)
        if reader.is_alive():
            session.sandbox.kill()
            reader.join(10)
            pytest.fail(f"read_file did not return within {BOUND_S:g} s")
    assert "data" not in box, box
    assert isinstance(box.get("exc"), FileTransferRefused | SessionError | SandboxError), box
    with watched_session(rt) as (session, _):
        assert exec_bounded(session, "print(6 * 7)", BOUND_S).stdout == "42\n"


@pytest.mark.parametrize("backend", ["process"])
def test_a_trickling_file_transfer_cannot_hold_read_file(runtimes: Runtimes) -> None:
    rt = runtimes(rules=FILES_RULES, limits={"file_transfer_mb": 1})
    body = ('    return {"t": "result", "id": frame["id"], "status": "ok", '
            '"has_answer": True, "answer": {"size": 1024 * 1024, '
            '"data": base64.b64encode(b"x").decode()}}')
    box: dict[str, Any] = {}
    with watched_session(rt) as (session, _):
        poison = exec_bounded(session, POISON_FILES.format(body=body), BOUND_S)
        assert poison.status == "ok", poison

        def read() -> None:
            try:
                box["data"] = session.read_file("/tmp/any")
            except BaseException as exc:   # judged below
                box["exc"] = exc

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(BOUND_S)
        held = reader.is_alive()
        if held:
            session.sandbox.kill()
            reader.join(10)
    assert not held, f"read_file was still running after {BOUND_S:g} s"
    # fixed after review s14a: refused once the pieces outnumber what the size needs
    assert isinstance(box.get("exc"), FileTransferRefused), box
    assert "pieces" in str(box["exc"]), box


# --- the bare agent: frames across the warm-up ------------------------------------------------

class BareAgent:
    """The agent of a freshly written bundle over pipes, confined at start as the process
    backend's is (seccomp and Landlock off: the frame path is under test)."""

    def __init__(self, bundle: Path, *, confine: bool = True) -> None:
        write_bundle(bundle)
        argv = ['--confine={"seccomp":false,"landlock":false}'] if confine else []
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-B", str(bundle / "agent.py"), *argv],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=bundle)
        self.decoder = protocol.FrameDecoder(protocol.AGENT_FRAMES)
        self.frames: list[dict[str, Any]] = []

    def write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def until(self, done: Any, bound: float = 10.0) -> list[dict[str, Any]]:
        assert self.proc.stdout is not None
        end = time.monotonic() + bound
        while not done(self.frames):
            assert time.monotonic() < end, f"no such frame in {bound} s: {self.frames}"
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            assert chunk, f"the agent's stream ended: {self.frames}"
            self.decoder.feed(chunk)
            self.frames += iter(self.decoder.next_frame, None)
        return self.frames

    def result(self, frame_id: str) -> dict[str, Any]:
        frames = self.until(lambda fs: any(f["t"] == "result" and f.get("id") == frame_id
                                           for f in fs))
        return next(f for f in frames if f["t"] == "result" and f.get("id") == frame_id)

    def output(self) -> str:
        return "".join(f["data"] for f in self.frames if f["t"] == "output")

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


def _ready(agent: BareAgent) -> None:
    assert agent.until(bool)[0]["t"] == "ready"


def test_a_frame_trickled_byte_by_byte_across_the_warm_up_is_served_in_order(
        tmp_path: Path) -> None:
    """After ``init``, past the grace, an exec frame arrives a byte every 2 ms, then a
    second one whole: the warm-up never reads them, both run, in order, once each."""
    agent = BareAgent(tmp_path)
    try:
        _ready(agent)
        agent.write(protocol.encode({"t": "init", "id": "i", "config": {}}))
        assert agent.result("i")["status"] == "ok"
        time.sleep(GRACE_S * 0.8)   # the grace is nearly over when the bytes begin
        first = protocol.encode({"t": "exec", "id": "c1", "code": "print('one')"})
        for i in range(len(first)):
            agent.write(first[i:i + 1])
            time.sleep(0.002)
        agent.write(protocol.encode({"t": "exec", "id": "c2", "code": "print('two')"}))
        assert agent.result("c1")["status"] == "ok"
        assert agent.result("c2")["status"] == "ok"
        results = [f["id"] for f in agent.frames if f["t"] == "result"]
        assert results == ["i", "c1", "c2"]
        assert agent.output() == "one\ntwo\n"
    finally:
        agent.close()


@pytest.mark.parametrize("confine", [True, False], ids=["at-start", "at-init"])
def test_sigints_before_init_and_during_the_warm_up_leave_the_agent_serving(
        tmp_path: Path, confine: bool) -> None:
    """SIGINTs from ``ready`` on, through ``init`` and the warm-up's steps: the agent keeps
    serving, the first cell is not interrupted (no interrupt frame names it), and its
    failure is still reported with a traceback."""
    agent = BareAgent(tmp_path, confine=confine)
    try:
        _ready(agent)
        stop = threading.Event()

        def storm() -> None:
            while not stop.is_set():
                agent.proc.send_signal(signal.SIGINT)
                time.sleep(0.001)

        stormer = threading.Thread(target=storm, daemon=True)
        stormer.start()
        try:
            time.sleep(0.01)
            agent.write(protocol.encode({"t": "init", "id": "i", "config": {}}))
            assert agent.result("i")["status"] == "ok"
            time.sleep(4 * GRACE_S)   # the steps run under the storm
        finally:
            stop.set()
            stormer.join()
        agent.write(protocol.encode({"t": "exec", "id": "c", "code": "print('ran')\n1/0"}))
        result = agent.result("c")
        assert result["status"] == "error", result
        assert "ZeroDivisionError" in str(result["error"]), result
        assert agent.output() == "ran\n"
        assert agent.proc.poll() is None
    finally:
        agent.close()


@pytest.mark.parametrize("delay_ms", [0, 5, 15, 30, 60])
def test_a_sigint_before_ready_never_leaves_a_ready_agent_that_does_not_serve(
        tmp_path: Path, delay_ms: int) -> None:
    """A SIGINT while the agent starts: it either dies before saying ready (the host sees
    a failed start) or, having said ready, serves. Never a ready agent that then dies."""
    agent = BareAgent(tmp_path)
    try:
        time.sleep(delay_ms / 1000)
        agent.proc.send_signal(signal.SIGINT)
        assert agent.proc.stdout is not None
        chunk = os.read(agent.proc.stdout.fileno(), 65536)
        if not chunk:   # died before ready
            assert agent.proc.wait(10) != 0
            return
        agent.decoder.feed(chunk)
        agent.frames += iter(agent.decoder.next_frame, None)
        assert agent.frames[0]["t"] == "ready"
        agent.write(protocol.encode({"t": "init", "id": "i", "config": {}})
                    + protocol.encode({"t": "exec", "id": "c", "code": "print('ok')"}))
        assert agent.result("c")["status"] == "ok"
    finally:
        agent.close()


def test_every_agent_has_its_modules_before_its_first_cell(
        tmp_path: Path) -> None:
    """43cf259: an agent without ``--confine`` (Docker's) has every step done before
    ``ready``; one with it has none done for a first cell in the same write as init, but
    all of them once it sat idle past the grace (a pooled sandbox)."""
    check = ("import sys\nprint(sorted(m for m in ('traceback', 'linecache', 'base64', "
             "'rlmbox.sandboxes.agent.files', 'rlmbox.sandboxes.agent.context_file') "
             "if m in sys.modules))")
    everything = ("['base64', 'linecache', 'rlmbox.sandboxes.agent.context_file', "
                  "'rlmbox.sandboxes.agent.files', 'traceback']")
    seen = {}
    for name, confine, pause in (("docker", False, 0.0), ("cold", True, 0.0),
                                 ("pooled", True, 10 * GRACE_S)):
        agent = BareAgent(tmp_path / name, confine=confine)
        try:
            _ready(agent)
            time.sleep(pause)
            agent.write(protocol.encode({"t": "init", "id": "i", "config": {}})
                        + protocol.encode({"t": "exec", "id": "c", "code": check}))
            assert agent.result("c")["status"] == "ok"
            seen[name] = agent.output().strip()
        finally:
            agent.close()
    # the idle warm-up under review left "cold" with none; reverted, every agent has them
    assert seen == {"docker": everything, "cold": everything, "pooled": everything}, seen


# --- more timing cases: restricted cells, an interrupted first cell ---------------------------

@pytest.mark.parametrize("backend", ["process", "docker-runc"])
@pytest.mark.parametrize("delay", [0.0, 0.05, 0.2])
def test_a_restricted_first_cell_runs_and_fails_as_a_later_one(
        runtimes: Runtimes, delay: float) -> None:
    """Restricted mode: the host sends compiled cells, and the agent imports ``base64`` and
    ``importlib.util`` at the first one (214a521) unless the warm-up did. A first cell at
    once, at the grace and after it runs; a failing one is reported with its line."""
    rt = runtimes(code={"mode": "restricted"})
    with watched_session(rt) as (session, _):
        time.sleep(delay)
        first = exec_bounded(session, "print(sum(range(5)))", BOUND_S)
        failing = exec_bounded(session, FAILING, BOUND_S)
    assert (first.status, first.stdout) == ("ok", "10\n"), first
    assert failing.status == "error", failing
    assert failing.error is not None
    assert "ZeroDivisionError" in failing.error, failing.error
    assert "line 2, in f" in failing.error, failing.error


@pytest.mark.parametrize("backend", ["process", "docker-runc"])
@pytest.mark.parametrize("delay", [0.0, 0.045, 0.05, 0.055, 0.2])
def test_a_first_cell_interrupted_as_it_is_sent_ends_interrupted(
        runtimes: Runtimes, delay: float) -> None:
    """The first cell spins; ``interrupt()`` follows its send at once, the cell sent at
    delays across the warm-up's grace (its SIGINT may land in a step under way): the
    cell ends ``interrupted`` well before its wall time, and the session goes on."""
    rt = runtimes(limits={"cell_timeout_s": 20, "interrupt_grace_s": 1})
    with watched_session(rt) as (session, _):
        time.sleep(delay)
        box: dict[str, Any] = {}
        worker = threading.Thread(target=lambda: box.update(r=session.exec(
            "while True:\n    pass\n")), daemon=True)
        started = time.monotonic()
        worker.start()
        answered = False
        while not answered and time.monotonic() - started < 10:
            answered = session.interrupt()
        worker.join(BOUND_S)
        took = time.monotonic() - started
        assert not worker.is_alive(), "the interrupted cell did not end"
        after = exec_bounded(session, "print('next')", BOUND_S)
    assert answered
    assert box["r"].status == "interrupted", box["r"]
    assert took < 10, took
    assert (after.status, after.stdout) == ("ok", "next\n"), after


POISON_MODULE = {
    "base64_fake": ("import sys, types\nm = types.ModuleType('base64')\n"
                    "m.b64encode = lambda b: b'!!not base64!!' * 1000\n"
                    "sys.modules['base64'] = m\n"),
    "signal_none": "import sys\nsys.modules['signal'] = None\n",
}


@pytest.mark.parametrize("backend", ["process"])
@pytest.mark.parametrize("kind", sorted(POISON_MODULE))
def test_a_first_cell_that_poisons_the_transfer_modules_imports_is_refused(
        runtimes: Runtimes, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first cell of a cold session poisons a module ``files`` imports (``base64``,
    ``signal``) before the agent ever imported ``files`` (it is imported at the first
    transfer since 214a521): a written file read back is refused or the session reported
    dead, within the bound; never wrong bytes, never a host hang."""
    monkeypatch.setattr(session_files, "CHUNK_TIMEOUT_S", 5.0)
    rt = runtimes(rules=FILES_RULES)
    with watched_session(rt) as (session, _):
        poison = exec_bounded(session, POISON_MODULE[kind] + "open('/tmp/f', 'w').write('ok')",
                              BOUND_S)
        assert poison.status == "ok", poison
        started = time.monotonic()
        try:
            data = session.read_file("/tmp/f")
        except (FileTransferRefused, SessionError, SandboxError):
            data = None
        took = time.monotonic() - started
    assert data in {None, b"ok"}, data
    assert took < BOUND_S, took
    with watched_session(rt) as (session, _):
        assert exec_bounded(session, "print(6 * 7)", BOUND_S).stdout == "42\n"


@pytest.mark.parametrize("backend", ["process", "docker-runc"])
@pytest.mark.parametrize("delay", [0.0, 0.05, 0.2])
def test_a_gated_context_first_read_across_the_warm_up(
        runtimes: Runtimes, delay: float) -> None:
    """A gated context (``gated_context`` imported at init or by the warm-up): the first
    cell's reads are host calls, sent at delays across the grace; each is answered."""
    rt = runtimes(context={"mode": "gated"},
                  rules=[{"id": "ctx", "effect": "permit", "function": "context.*"}])
    with watched_session(rt, context="abc-s14a-" * 50) as (session, _):
        time.sleep(delay)
        result = exec_bounded(session, "print(len(context), context.search('s14a', 2))",
                              BOUND_S)
    assert result.status == "ok", result
    assert result.stdout.startswith("450 "), result.stdout


MODULE_FAILS = (
    "import sys\n"
    "open('/tmp/mod_s14a.py', 'w').write('def g():\\n    raise ValueError(\"from module\")\\n')\n"
    "sys.path.insert(0, '/tmp')\n"
    "import mod_s14a\n"
    "mod_s14a.g()\n")


@pytest.mark.parametrize("backend", ["process", "docker-runc"])
def test_a_first_cell_whose_traceback_reads_source_reports_it_cold_as_warm(
        runtimes: Runtimes) -> None:
    """The failing frame is in a module file the cell wrote: its report quotes the source
    line (``linecache``, imported with ``traceback`` after the cell on a cold start)."""
    rt = runtimes()
    with watched_session(rt) as (session, _):
        cold = exec_bounded(session, MODULE_FAILS, BOUND_S)
    with watched_session(rt) as (session, _):
        time.sleep(20 * GRACE_S)
        warm = exec_bounded(session, MODULE_FAILS, BOUND_S)
    assert cold.status == "error", cold
    assert cold.error == warm.error
    assert cold.error is not None
    assert 'raise ValueError("from module")' in cold.error, cold.error


PLANT = """
import json, os, sys
planted = []
for entry in sys.path:
    for where in (entry, os.path.join(entry, "__pycache__")):
        for name in ("traceback.py", "base64.py", "linecache.py",
                     "traceback.cpython-311.pyc", "s14a_probe.py"):
            try:
                with open(os.path.join(where, name), "x") as fh:
                    fh.write("raise SystemExit('planted')")
                planted.append(os.path.join(where, name))
            except OSError:
                pass
print(json.dumps(planted))
"""


@pytest.mark.parametrize("backend", ["process", "docker-runc", "docker-runsc"])
def test_a_first_cell_cannot_plant_a_module_the_agent_imports_later(
        runtimes: Runtimes) -> None:
    """Since 214a521 the agent imports ``traceback``, ``linecache``, ``base64``,
    ``importlib.util``, ``files`` ... after model code may have run (a cold session's
    first cell, sent at once, comes before the warm-up). Its import path starts with the
    bundle directory: no entry of ``sys.path`` (nor its ``__pycache__``) is writable to a
    cell, so no file can stand in for one of them; the next failing cell reports as usual."""
    rt = runtimes()
    with watched_session(rt) as (session, _):
        planted = run_json(session, PLANT)
        failing = exec_bounded(session, FAILING, BOUND_S)
    assert planted == [], planted
    assert failing.status == "error", failing
    assert failing.error is not None
    assert "ZeroDivisionError" in failing.error, failing.error


# --- a first cell that used every descriptor: the lazy imports need one -----------------------

LEAK_AND_FAIL = (
    "open('/tmp/data.txt', 'w').write('hello')\n"
    "handles = []\n"
    "while True:\n"
    "    handles.append(open('/tmp/data.txt'))\n")
LEAK_AND_CATCH = (
    "open('/tmp/data.txt', 'w').write('hello')\n"
    "handles = []\n"
    "try:\n"
    "    while True:\n"
    "        handles.append(open('/tmp/data.txt'))\n"
    "except OSError:\n"
    "    pass\n"
    "print(len(handles) > 50)\n")


WARM_PROBE = ("import sys\nloaded = [m in sys.modules for m in ('traceback', 'linecache', "
              "'rlmbox.sandboxes.agent.files', 'base64')]\nprint(any(loaded), all(loaded))")


def _first_cell_sees_the_warm_up(session: Any, backend: str, pause: float) -> None:
    """A first cell that only looks whether the warm-up's modules are loaded. A process
    sandbox whose first cell came at once must not be warmed (else the host was too slow
    for the case to mean anything: skipped, never passed); a pause past the grace, or
    Docker's agent, must be."""
    probe = exec_bounded(session, WARM_PROBE, BOUND_S)
    assert probe.status == "ok", probe
    _some, every = probe.stdout.split()
    # since the revert of the idle warm-up, every agent has them before any model code
    assert every == "True", (backend, pause, probe.stdout)


def _leak_reported(runtimes: Runtimes, backend: str, pause: float) -> None:
    """A probe cell, sent ``pause`` s after ``session()``, then one that leaks file
    objects until ``open`` fails with EMFILE (limits.open_files), keeping them: its
    OSError is reported and the session goes on."""
    rt = runtimes(rules=FILES_RULES)
    with watched_session(rt) as (session, _):
        time.sleep(pause)
        _first_cell_sees_the_warm_up(session, backend, pause)
        failed = exec_bounded(session, LEAK_AND_FAIL, BOUND_S)
        assert failed.status == "error", failed
        assert failed.error is not None
        assert "Too many open files" in failed.error, failed.error
        after = exec_bounded(session, "print(len(handles) > 50)", BOUND_S)
        assert (after.status, after.stdout) == ("ok", "True\n"), after


def _leak_then_transfer(runtimes: Runtimes, backend: str, pause: float) -> None:
    """After the probe cell (``pause`` after ``session()``) a cell leaks every
    descriptor and ends ok; a file read then is refused by the sandbox for want of a
    descriptor, and the session goes on."""
    rt = runtimes(rules=FILES_RULES)
    with watched_session(rt) as (session, _):
        time.sleep(pause)
        _first_cell_sees_the_warm_up(session, backend, pause)
        caught = exec_bounded(session, LEAK_AND_CATCH, BOUND_S)
        assert (caught.status, caught.stdout) == ("ok", "True\n"), caught
        with pytest.raises(FileTransferRefused, match="the sandbox refused"):
            session.read_file("/tmp/data.txt")
        after = exec_bounded(session, "handles.clear()\nprint('alive')", BOUND_S)
        assert (after.status, after.stdout) == ("ok", "alive\n"), after


@pytest.mark.parametrize("backend", ["process"])
def test_a_cold_first_cell_out_of_descriptors_is_reported_not_killed(
        runtimes: Runtimes, backend: str) -> None:
    _leak_reported(runtimes, backend, 0.0)


@pytest.mark.parametrize("backend", ["process"])
def test_a_transfer_after_a_cold_first_cell_out_of_descriptors_is_refused_not_killed(
        runtimes: Runtimes, backend: str) -> None:
    _leak_then_transfer(runtimes, backend, 0.0)


@pytest.mark.parametrize("backend", ["process"])
def test_a_warmed_first_cell_out_of_descriptors_is_reported(runtimes: Runtimes,
                                                            backend: str) -> None:
    """The control of the two above: the same cells once the warm-up has run (a pause
    well past the grace, as in a pool) are reported and the session goes on."""
    _leak_reported(runtimes, backend, 20 * GRACE_S)
    _leak_then_transfer(runtimes, backend, 20 * GRACE_S)


@pytest.mark.parametrize("backend", ["docker-runc"])
def test_a_cold_first_cell_out_of_descriptors_is_reported_on_docker(
        runtimes: Runtimes, backend: str) -> None:
    """Docker's agent warmed up before ``ready`` (43cf259): it holds there, cold."""
    _leak_reported(runtimes, backend, 0.0)
    _leak_then_transfer(runtimes, backend, 0.0)


# --- a module of the session's own that shadows one the error report imports later ------------

OWN_MODULE = (
    "open('/tmp/{name}.py', 'w').write('LABEL = \"the session s own {name}\"\\n')\n"
    "import sys\n"
    "sys.path.insert(0, '/tmp')\n"
    "import {name}\n")


def _own_module_then_failure(runtimes: Runtimes, backend: str, name: str,
                             pause: float = 0.0) -> None:
    """Cells put a helper module of their own, named like a standard module the agent's
    error report needs, ahead on ``sys.path``; two ordinary cells later one fails. It is
    reported, and the session goes on."""
    rt = runtimes()
    with watched_session(rt) as (session, _):
        time.sleep(pause)
        _first_cell_sees_the_warm_up(session, backend, pause)
        own = exec_bounded(session, OWN_MODULE.format(name=name), BOUND_S)
        assert own.status == "ok", own
        assert exec_bounded(session, "x = 1", BOUND_S).status == "ok"
        failed = exec_bounded(session, "[][x]", BOUND_S)
        assert failed.status == "error", failed
        assert failed.error is not None
        assert "IndexError" in failed.error, failed.error
        after = exec_bounded(session, "print(x)", BOUND_S)
        assert (after.status, after.stdout) == ("ok", "1\n"), after


@pytest.mark.parametrize("backend", ["process"])
@pytest.mark.parametrize("name", ["token", "linecache"])
def test_a_cold_sessions_own_token_module_does_not_kill_it_at_its_first_error(
        runtimes: Runtimes, backend: str, name: str) -> None:
    _own_module_then_failure(runtimes, backend, name)


@pytest.mark.parametrize("backend", ["docker-runc", "docker-runsc"])
@pytest.mark.parametrize("name", ["token", "linecache"])
def test_a_cold_sessions_own_token_module_on_docker(runtimes: Runtimes, backend: str,
                                                    name: str) -> None:
    """Docker's agent warmed up before ``ready``: the stdlib modules are already loaded."""
    _own_module_then_failure(runtimes, backend, name)


@pytest.mark.parametrize("backend", ["process"])
@pytest.mark.parametrize("name", ["token", "linecache"])
def test_a_warmed_sessions_own_token_module_does_not_kill_it(
        runtimes: Runtimes, backend: str, name: str) -> None:
    """The control: the same cells after a pause past the grace (the warm-up ran)."""
    _own_module_then_failure(runtimes, backend, name, 20 * GRACE_S)


def _own_module_then_transfer(runtimes: Runtimes, backend: str, name: str,
                              pause: float = 0.0) -> None:
    """A module of the session's own named like one ``files`` imports, ahead on
    ``sys.path``; then a file is read back: the bytes come, the session goes on."""
    rt = runtimes(rules=FILES_RULES)
    with watched_session(rt) as (session, _):
        time.sleep(pause)
        _first_cell_sees_the_warm_up(session, backend, pause)
        own = exec_bounded(session, OWN_MODULE.format(name=name)
                           + "open('/tmp/f.txt', 'w').write('bytes-s14a')\n", BOUND_S)
        assert own.status == "ok", own
        assert session.read_file("/tmp/f.txt") == b"bytes-s14a"
        after = exec_bounded(session, "print('alive')", BOUND_S)
        assert (after.status, after.stdout) == ("ok", "alive\n"), after


@pytest.mark.parametrize("backend", ["process"])
@pytest.mark.parametrize("name", ["base64", "signal"])
def test_a_cold_sessions_own_base64_module_does_not_kill_it_at_a_transfer(
        runtimes: Runtimes, backend: str, name: str) -> None:
    _own_module_then_transfer(runtimes, backend, name)


@pytest.mark.parametrize("backend", ["process"])
@pytest.mark.parametrize("name", ["base64", "signal"])
def test_a_warmed_sessions_own_base64_module_does_not_kill_it_at_a_transfer(
        runtimes: Runtimes, backend: str, name: str) -> None:
    """The control: the same after a pause past the grace (the warm-up imported files)."""
    _own_module_then_transfer(runtimes, backend, name, 20 * GRACE_S)


@pytest.mark.parametrize("backend", ["docker-runc"])
@pytest.mark.parametrize("name", ["base64", "signal"])
def test_a_cold_sessions_own_base64_module_on_docker(runtimes: Runtimes, backend: str,
                                                     name: str) -> None:
    """Docker's agent warmed up before ``ready``: files and its imports are loaded."""
    _own_module_then_transfer(runtimes, backend, name)


def test_after_the_first_cell_the_agent_imports_nothing_of_its_own_between_cells(
        tmp_path: Path) -> None:
    """The warm-up stops for good at the first cell (model code shares the interpreter
    from then on): idle time after it, well past the grace, loads no module."""
    agent = BareAgent(tmp_path)
    try:
        _ready(agent)
        agent.write(protocol.encode({"t": "init", "id": "i", "config": {}})
                    + protocol.encode({"t": "exec", "id": "c1",
                                       "code": "import sys\nbefore = set(sys.modules)"}))
        assert agent.result("c1")["status"] == "ok"
        time.sleep(10 * GRACE_S)
        agent.write(protocol.encode({"t": "exec", "id": "c2",
                                     "code": "print(sorted(set(sys.modules) - before))"}))
        assert agent.result("c2")["status"] == "ok"
        assert agent.output() == "[]\n"
    finally:
        agent.close()


@pytest.mark.parametrize("backend", ["process"])
def test_a_pooled_sandbox_taken_at_once_survives_its_own_token_module(
        backend: str, tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(policy_yaml(backend))
    rt = Runtime(policy=path, audit_dir=tmp_path / "audit", pool_size=1)
    try:
        assert rt.warm_up(timeout=30)
        with watched_session(rt) as (session, _):
            _first_cell_sees_the_warm_up(session, backend, 0.0)
            own = exec_bounded(session, OWN_MODULE.format(name="token"), BOUND_S)
            assert own.status == "ok", own
            failed = exec_bounded(session, "[][1]", BOUND_S)
            assert failed.status == "error", failed
    finally:
        rt.close()
