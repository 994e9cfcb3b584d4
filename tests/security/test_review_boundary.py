"""Review of the sandbox boundary (review-boundary): attacks that broke a documented promise.

Each test performs the attack and asserts the promise. They fail today, so each is marked
``xfail(strict=True)``: the moment the hole is closed the test passes, strict xfail turns
that into a failure, and whoever fixed it removes the mark.

All run on the ``process`` backend (the default); where the hole is in backend-neutral
code (the host-call loop, the restricted guards) the backend does not matter.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from rlmbox.errors import SessionClosed, SessionKilled
from rlmbox.lm.scripted import ScriptedLM
from rlmbox.runtime.runtime import Runtime
from rlmbox.runtime.session import Session, SessionState
from rlmbox.runtime.staging import private_contexts_dir

from .harness import SANDBOX_UID, audit_records, policy_yaml, watched_session


def _runtime(tmp_path: Path, *, lm: ScriptedLM | None = None,
             rlm_lm: ScriptedLM | None = None, **policy: object) -> Runtime:
    path = tmp_path / "policy.yaml"
    path.write_text(policy_yaml("process", **policy))  # type: ignore[arg-type]
    return Runtime(policy=path, lm=lm or ScriptedLM(default="lm-answer"), rlm_lm=rlm_lm,
                   audit_dir=tmp_path / "audit", pool_size=0)


# --- 1. a host call runs past the cell's wall time ---------------------------------------

def test_rlm_query_cannot_keep_a_cell_past_its_wall_time(tmp_path: Path) -> None:
    """README: "A cell past its wall time is interrupted"; security.md 23/26. A cell that
    calls ``rlm_query`` blocks the host in the dispatcher, where the cell's deadline is not
    looked at: the child RLM runs up to ``MAX_CHILD_STEPS`` steps, each cell up to its own
    ``cell_timeout_s``. The prompt is the sandbox's, so prompt injection makes a real child
    model write exactly such cells; here a scripted child model does."""
    child = ScriptedLM(default="```repl\nwhile True:\n    pass\n```")
    rt = _runtime(tmp_path, rlm_lm=child,
                  limits={"cell_timeout_s": 0.5, "interrupt_grace_s": 0.5},
                  rules=[{"id": "permit-all", "effect": "permit", "function": "*"}],
                  budgets={"tree": {"calls": 50, "max_depth": 2}})
    try:
        with watched_session(rt) as (session, _):
            started = time.monotonic()
            result = session.exec("print(rlm_query('spin, please'))")
            took = time.monotonic() - started
            limits = rt.policy.limits
            # wall time + grace, plus slack for killing a child sandbox on a loaded host
            assert took <= limits.cell_timeout_s + limits.interrupt_grace_s + 1.5, (
                f"the cell ran {took:.1f} s under a {limits.cell_timeout_s} s wall time "
                f"(status {result.status})")
    finally:
        rt.close()


# --- 2. restricted mode: frames reached through getattr ----------------------------------

FRAME_WALK = """
A = getattr
def g():
    yield A(A(gen, 'gi_' + 'frame'), 'f_' + 'back')
gen = g()
f = next(gen)
found = {}
while f is not None:
    gl = A(f, 'f_' + 'globals')
    for name in ('os', 'sys', 'socket', 'subprocess'):
        if name in gl:
            found[name] = gl[name]
    f = A(f, 'f_' + 'back')
print('REACHED', sorted(found))
if 'os' in found:
    print('LISTED', found['os'].listdir('/'))
"""


def test_restricted_getattr_cannot_walk_frames_to_a_module_off_the_allowlist(
        tmp_path: Path) -> None:
    """policy-reference.md, code gate: "guarded attribute access (no private names, ...,
    no reaching non-allowlisted modules through allowed ones)" and "Escapes through
    getattr ... fail". ``gen.gi_frame`` is refused by the gate as syntax, but the same
    names through ``getattr`` pass the runtime guard (it refuses only ``_`` names), and
    the agent's frames above the cell hold ``os`` and ``sys`` in their globals."""
    rt = _runtime(tmp_path, code={"mode": "restricted"})
    try:
        with watched_session(rt) as (session, _):
            result = session.exec(FRAME_WALK)
            reached = [line for line in result.stdout.splitlines()
                       if line.startswith("REACHED")]
            assert result.status == "error" or reached == ["REACHED []"], (
                f"restricted code reached {reached}: {result.stdout[-300:]}")
    finally:
        rt.close()


# --- 3. staged contexts readable by any host process running as "nobody" -----------------

READ_STAGE = """
import os, sys
argv = open('/proc/%d/cmdline', 'rb').read().split(b'\\0')
stage = argv[argv.index(b'/rlmbox/stage') - 1].decode()
try:
    print(open(stage + '/context.txt').read())
except OSError as exc:
    print('refused', exc.errno)
"""


def _as_sandbox_uid() -> None:
    os.setgroups([])
    os.setresgid(SANDBOX_UID, SANDBOX_UID, SANDBOX_UID)
    os.setresuid(SANDBOX_UID, SANDBOX_UID, SANDBOX_UID)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("bwrap") is None
                    or not Path("/usr/bin/python3").exists(),
                    reason="needs root (the uid drop), bubblewrap and /usr/bin/python3")
def test_a_host_process_running_as_nobody_cannot_read_a_staged_context(
        tmp_path: Path) -> None:
    """threat-model.md, "another local user": "per-sandbox stage owned by uid 65534,
    0700". uid 65534 is the system's ``nobody``, shared with every service that drops to
    it, and bwrap's command line (``/proc/PID/cmdline``, readable by every uid) names the
    stage directory. Such a process read the live session's confidential context, until
    each jail got a host uid of its own (``sandboxes/process/uids.py``)."""
    canary = "staged-context-canary-7d1c"
    rt = _runtime(tmp_path)
    try:
        with watched_session(rt, context=canary) as (session, _):
            assert session.exec("print(len(context))").stdout == f"{len(canary)}\n"
            bwrap_pid = session.sandbox.host_pids()[0]   # type: ignore[attr-defined]
            other = subprocess.run(
                ["/usr/bin/python3", "-I", "-c", READ_STAGE % bwrap_pid],
                capture_output=True, text=True, timeout=30, cwd="/",
                env={"PATH": "/usr/bin:/bin"}, preexec_fn=_as_sandbox_uid, check=False)
            assert canary not in other.stdout, "a host process as nobody read the context"
    finally:
        rt.close()


# --- 4. cpu_seconds is per process: forked children each got the whole allowance ------
# (now on every backend: test_cpu_seconds_tree.py)


# --- 5. the context searcher outlives a session closed mid-search ------------------------

def _my_searchers() -> list[int]:
    """Running search programs descended from this process (other runs' are not ours)."""
    from .test_context_searcher_jail import _searcher_pids

    found = []
    for pid in _searcher_pids():
        parent = pid
        while parent > 1:
            try:
                parent = int(Path(f"/proc/{parent}/stat").read_text()
                             .rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                break
            if parent == os.getpid():
                found.append(pid)
                break
    return found


def test_no_searcher_outlives_a_session_closed_mid_search(tmp_path: Path) -> None:
    """security.md: "no process of the sandbox outlives its session"; the searcher runs
    the sandbox's regex and "ends with the cell" (promise 60). Closing the session (the
    daemon's DELETE or its reaper, from another thread) while a catastrophic search runs
    leaves that search running for up to the cell's remaining time."""
    rt = _runtime(tmp_path, limits={"cell_timeout_s": 8}, context={"mode": "gated"},
                  rules=[{"id": "ctx", "effect": "permit", "function": "context.*"}])
    session = rt.session(context="a" * 40 + "!")
    worker = threading.Thread(target=lambda: _exec_quietly(
        session, "print(context.search(r'(a+)+$'))"))
    try:
        worker.start()
        deadline = time.monotonic() + 5
        while not _my_searchers() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _my_searchers(), "the search never started"
        session.close()
        time.sleep(0.5)   # the kernel reaps a killed tree asynchronously
        assert not _my_searchers(), "a searcher outlived its closed session"
    finally:
        session.close()
        worker.join()
        rt.close()


def _exec_quietly(session: Session, code: str) -> object:
    try:
        return session.exec(code)
    except Exception as exc:   # the test looks at processes, not at this cell
        return exc


# --- 6. gated contexts stay on the host's disk after the session -------------------------

def test_a_gated_context_is_removed_from_the_host_when_its_session_ends(
        tmp_path: Path) -> None:
    """staging.py: contexts live in the host-only contexts directory while a sandbox needs
    them, and a staged (non-gated) context is unlinked once handed over; process sandboxes
    remove their stage at kill. A gated context is written there twice (the whole context,
    denied documents included, and the view) and never removed: every daemon session
    leaves its full context on the host's disk."""
    rt = _runtime(tmp_path, context={"mode": "gated",
                                     "documents": {"allow": ["*"], "deny": ["secret-*"]}},
                  rules=[{"id": "ctx", "effect": "permit", "function": "context.*"}])
    try:
        with watched_session(rt, context={"public": "hello",
                                          "secret-1": "gated-denied-doc-3b9e"}) as (session, _):
            result = session.exec("print(len(context))")
            assert result.status == "ok", result.error
            directory = private_contexts_dir() / session.id
            assert directory.exists()
        left = sorted(p.name for p in directory.iterdir()) if directory.exists() else []
        assert not left, f"after the session, {directory} still holds {left}"
    finally:
        rt.close()


# --- 7. closing a session while a cell runs ---------------------------------------------

def test_closing_a_session_mid_cell_ends_the_cell_cleanly(tmp_path: Path) -> None:
    """Session.exec documents its exceptions (SessionClosed, SessionKilled, SessionError,
    AuditWriteError); the daemon closes sessions from other threads (DELETE, the reaper,
    shutdown) without the exec lock. A close during a cell must end that cell as killed
    or closed, leave the session closed, and keep ``session.end`` its last record."""
    rt = _runtime(tmp_path, limits={"cell_timeout_s": 10})
    try:
        for _ in range(3):
            session = rt.session()
            outcome: dict[str, object] = {}

            def run(s: Session = session, out: dict[str, object] = outcome) -> None:
                try:
                    out["result"] = s.exec("import time\nfor _ in range(80): time.sleep(0.1)")
                except Exception as exc:
                    out["error"] = exc

            worker = threading.Thread(target=run)
            worker.start()
            time.sleep(1.0)
            session.close()
            worker.join()
            error = outcome.get("error")
            assert error is None or isinstance(error, SessionClosed | SessionKilled), \
                f"exec raised {error!r}"
            assert session.state is SessionState.CLOSED, session.state
            records = [r for r in audit_records(rt) if r.get("session") == session.id]
            assert records[-1].get("event") == "session.end", \
                [r.get("event") for r in records[-3:]]
    finally:
        rt.close()
