"""Exhaustion: fork, thread, memory, disk, inode, output, recursion, zip, CPU, time, signals.

Each attack is allowed to run; it must stay inside the policy's limits (measured on the
host where possible), end the cell with a clear status, leave the host able to work, and
leave no process behind when the session ends. The policy of these tests is small
(harness.BASE_LIMITS): 256 MiB, 64 pids, 32 MiB of disk, 64 KiB of output, 3 s a cell.
"""

from __future__ import annotations

import resource
import subprocess
import zlib

import pytest

from rlmbox.errors import SessionError, SessionKilled

from .harness import (
    BASE_LIMITS,
    HostTargets,
    Runtimes,
    events,
    run_json,
    skip_on_e2b,
    watched_session,
)

MiB = 1024 * 1024
ENDED = ("ok", "error", "interrupted", "killed")


def _host_still_works() -> None:
    assert subprocess.run(["true"], check=False).returncode == 0


def test_fork_bomb_is_contained(backend: str, runtimes: Runtimes, host: HostTargets) -> None:
    """A fork bomb stops at the pids limit; the host can still fork; nothing survives."""
    rt = runtimes()
    limit = rt.policy.limits.pids
    with watched_session(rt) as (session, witness):
        result = session.exec(
            "import os, time\n"
            "try:\n"
            "    while True:\n"
            "        os.fork()\n"
            "except OSError:\n"
            "    time.sleep(0.5)\n")
        assert result.status in ENDED
        if backend == "process":   # counted on the host: the group never exceeded the limit
            assert len(witness.observe()) <= limit + 2
        _host_still_works()
    host.assert_unharmed()


def test_thread_bomb_is_contained(backend: str, runtimes: Runtimes) -> None:
    """Threads count against the pids limit too: starting them fails, the cell reports it.
    Under gVisor guest threads are Sentry tasks, not host threads, so the pids limit does
    not see them: the cell's wall time and memory limit end the bomb instead."""
    rt = runtimes()
    with watched_session(rt) as (session, _):
        result = session.exec(
            "import threading, time\n"
            "ev = threading.Event()\n"
            "n = 0\n"
            "try:\n"
            "    while True:\n"
            "        threading.Thread(target=ev.wait, daemon=True).start(); n += 1\n"
            "finally:\n"
            "    ev.set()\n"
            "    print(n)\n")
        allowed = ("error", "killed", "interrupted") if backend == "docker-runsc" else (
            "error", "killed")
        assert result.status in allowed
        if result.status == "error":
            assert "thread" in (result.error or "").lower() or "Memory" in (result.error or "")
            assert int(result.stdout.split()[0]) <= rt.policy.limits.pids
    _host_still_works()


def test_fast_memory_bomb_is_a_memory_error(runtimes: Runtimes) -> None:
    """One huge allocation fails inside; the session lives on with its state."""
    with watched_session(runtimes()) as (session, _):
        session.exec("kept = 41")
        result = session.exec("x = bytearray(64 * 1024 ** 3)")
        assert result.status in ("error", "killed")
        if result.status == "error":
            assert "MemoryError" in (result.error or "")
            assert session.exec("print(kept + 1)").stdout == "42\n"


def test_slow_memory_bomb_stops_at_the_limit(runtimes: Runtimes) -> None:
    """Growing memory in steps is stopped near the limit: the cell ends (MemoryError or an
    out-of-memory kill named as such) and no step past the limit ever succeeded."""
    rt = runtimes()
    limit_mb = rt.policy.limits.memory_mb
    with watched_session(rt) as (session, _):
        result = session.exec(
            "chunks = []\n"
            "while True:\n"
            "    chunks.append(bytearray(8 * 1024 * 1024))\n"
            "    chunks[-1][::4096] = b'x' * (8 * 256)\n"
            "    print(len(chunks) * 8, flush=True)\n")
        assert result.status in ("error", "killed")
        reached = max((int(n) for n in result.stdout.split() if n.isdigit()), default=0)
        assert reached <= limit_mb * 2 + 256, f"allocated {reached} MiB past the limit"
        if result.status == "killed":
            assert "memory" in (result.error or "").lower()
            assert events(rt, "limit.exceeded") or events(rt, "sandbox.killed")
    _host_still_works()


E2B_DISK = ("an E2B VM's disk is its template's (provider-attested), not limits.disk_mb; "
            "RLIMIT_FSIZE still caps each file (docs/backends-e2b.md)")


def test_disk_fill_stops_at_the_tmpfs_cap(runtimes: Runtimes, host: HostTargets) -> None:
    """Writing until the disk is full stops at the policy's disk size."""
    skip_on_e2b(runtimes.backend, E2B_DISK)
    rt = runtimes()
    with watched_session(rt) as (session, _):
        outcome = run_json(session, """
import json, os
written, n = 0, 0
block = b'x' * (1024 * 1024)
try:
    while written < 4 * 1024 ** 3:
        with open('/tmp/fill-%d' % n, 'wb') as handle:
            for _ in range(8):
                written += handle.write(block)
        n += 1
except OSError as exc:
    err = exc.errno
print(json.dumps({'written': written, 'errno': err}))
""")
    assert outcome["written"] <= (rt.policy.limits.disk_mb + 1) * MiB
    host.assert_unharmed()


WRITABLE_FILL = """
import json, os
written = {}
block = b'x' * (1024 * 1024)
places = ['/tmp', '/dev/shm', '/dev', '/dev/mqueue', '/var/tmp', '/run', '/work',
          os.getcwd(), os.environ.get('HOME', '/tmp'), os.environ.get('TMPDIR', '/tmp')]
for place in dict.fromkeys(os.path.realpath(p) for p in places):
    path, total = os.path.join(place, 'rlmbox-fill'), 0
    try:
        with open(path, 'wb') as handle:
            while total < 64 * 1024 * 1024:
                total += handle.write(block)
                handle.flush()
    except OSError:
        pass
    written[place] = total
    if os.path.exists(path):
        os.unlink(path)   # free it again: each place is measured on its own
print(json.dumps(written))
"""


def test_every_writable_place_is_capped_by_the_disk_limit(runtimes: Runtimes,
                                                         host: HostTargets) -> None:
    """No writable directory (/tmp, /dev/shm, /dev, the working directory, ...) takes
    more than the policy's disk size: shared memory is no way around the disk limit."""
    skip_on_e2b(runtimes.backend, E2B_DISK)
    rt = runtimes(limits={"disk_mb": 4})
    with watched_session(rt) as (session, _):
        written = run_json(session, WRITABLE_FILL)
    over = {place: n // MiB for place, n in written.items() if n > 5 * MiB}
    assert not over, f"MiB written past a 4 MiB disk limit: {over}"
    assert written["/tmp"] > 0, "the probe could not write even /tmp"
    host.assert_unharmed()


@pytest.mark.slow
def test_inode_fill_is_bounded(runtimes: Runtimes, host: HostTargets) -> None:
    """Creating empty files without end ends with the cell (full, interrupted or killed);
    the host is unaffected and the next session starts normally."""
    rt = runtimes()
    with watched_session(rt) as (session, _):
        result = session.exec(
            "import os\nn = 0\n"
            "while True:\n"
            "    os.close(os.open('/tmp/i%d' % n, os.O_CREAT | os.O_WRONLY))\n"
            "    n += 1\n")
        assert result.status in ("error", "interrupted", "killed")
    with watched_session(rt) as (fresh, _):
        assert fresh.exec("print(1)").stdout == "1\n"
    host.assert_unharmed()


FLOODS = {
    "print-lines": "for _ in range(200_000):\n    print('y' * 1000)\n",
    "no-newlines": "import sys\nfor _ in range(200_000):\n    sys.stdout.write('z' * 1000)\n",
    "raw-fd": "import os\nfor _ in range(3_000):\n    os.write(1, b'w' * 65536)\n",
    "stderr": "import sys\nfor _ in range(200_000):\n    sys.stderr.write('e' * 1000)\n",
    # a child process writing straight to fd 1 (the images hold Python, not coreutils)
    "child-process": ("import subprocess, sys\n"
                      "subprocess.run([sys.executable, '-c', 'import os\\n"
                      "for _ in range(200): os.write(1, b\"c\" * 1000000)'])\n"),
}


@pytest.mark.parametrize("flood", sorted(FLOODS))
def test_output_flood_is_capped(runtimes: Runtimes, flood: str) -> None:
    """200 MB of output, with or without newlines, raw, on stderr or from a child,
    arrives capped with a truncation marker and a count of dropped bytes; host memory
    stays bounded."""
    rt = runtimes()
    cap = rt.policy.limits.output_bytes
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with watched_session(rt) as (session, _):
        result = session.exec(FLOODS[flood])   # the policy's cell_timeout_s
        assert result.status in ("ok", "interrupted")
        stream = result.stderr if flood == "stderr" else result.stdout
        assert result.truncated
        if result.status == "ok":
            assert sum(result.dropped.values()) > 100 * MiB
        assert len(stream.encode()) <= cap + 200
        assert "output truncated" in stream
        assert session.exec("print('after')").stdout == "after\n"
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
    assert grown_kib < 64 * 1024, f"host memory grew by {grown_kib} KiB"


def test_deep_recursion(runtimes: Runtimes) -> None:
    """Plain deep recursion is a RecursionError; raising the limit and overflowing the C
    stack crashes only the sandbox, reported as killed; a new session works."""
    rt = runtimes()
    with watched_session(rt) as (session, _):
        first = session.exec("def f(n):\n    return f(n + 1)\nf(0)")
        assert first.status == "error"
        assert "RecursionError" in (first.error or "")
        second = session.exec("import sys\nsys.setrecursionlimit(10 ** 8)\nf(0)")
        assert second.status in ("error", "killed")
    with watched_session(rt) as (fresh, _):
        assert fresh.exec("print(2)").stdout == "2\n"


def _zip_bomb() -> str:
    """~2 MiB of raw deflate that inflates to 2 GiB, as hex text (the context is text).

    After a full flush the compressor's output for the same block repeats byte for byte,
    so the bomb is built from three compressions instead of compressing 2 GiB.
    """
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = bytes(MiB)
    first = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
    repeat = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
    return (first + repeat * 2047 + comp.flush()).hex()


def test_zip_bomb_is_bounded_by_memory(runtimes: Runtimes) -> None:
    """Inflating a 2 GiB zlib bomb fails at the memory limit, not on the host."""
    rt = runtimes()
    with watched_session(rt, context=_zip_bomb()) as (session, _):
        result = session.exec("import zlib\nout = zlib.decompress(bytes.fromhex(context), -15)\n"
                              "print(len(out))")
        assert result.status in ("error", "killed")
    _host_still_works()


@pytest.mark.slow
def test_cpu_spin_is_interrupted_and_state_kept(runtimes: Runtimes) -> None:
    """A busy loop is interrupted at the cell's wall time; the namespace survives."""
    rt = runtimes()
    with watched_session(rt) as (session, _):
        session.exec("kept = 'still here'")
        result = session.exec("while True:\n    pass\n")
        assert result.status == "interrupted"
        assert session.exec("print(kept)").stdout == "still here\n"
    assert events(rt, "limit.exceeded", limit="cell_timeout_s")


@pytest.mark.slow
def test_sleep_past_the_limit_is_interrupted(runtimes: Runtimes) -> None:
    """Sleeping past the cell's wall time is interrupted like any other cell."""
    with watched_session(runtimes()) as (session, _):
        result = session.exec("import time\ntime.sleep(3600)\n")
        assert result.status == "interrupted"
        assert session.exec("print('awake')").stdout == "awake\n"


IGNORERS = {
    "sigint-ignored": ("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                       "while True:\n    pass\n"),
    "keyboardinterrupt-swallowed": ("while True:\n    try:\n        while True:\n"
                                    "            pass\n    except KeyboardInterrupt:\n"
                                    "        pass\n"),
    "all-signals-ignored": ("import signal\n"
                            "for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):\n"
                            "    signal.signal(s, signal.SIG_IGN)\n"
                            "while True:\n    pass\n"),
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(IGNORERS))
def test_interrupt_ignoring_cell_is_killed(runtimes: Runtimes, kind: str) -> None:
    """A cell that ignores the interrupt is killed after the grace period; the session is
    dead, says why, refuses further cells, and the kill is in the audit log."""
    rt = runtimes()
    with watched_session(rt) as (session, _):
        result = session.exec(IGNORERS[kind])
        assert result.status == "killed"
        assert "interrupt" in (result.error or "")
        with pytest.raises(SessionKilled):
            session.exec("print(1)")
    assert events(rt, "limit.exceeded", limit="cell_timeout_s")
    assert events(rt, "sandbox.killed")


def test_escapees_die_with_the_session(backend: str, runtimes: Runtimes,
                                       host: HostTargets) -> None:
    """setsid + double fork daemons, TERM-ignoring children and a process group of its own
    all die when the session closes."""
    rt = runtimes()
    with watched_session(rt) as (session, witness):
        result = session.exec(
            "import os, signal, subprocess, time\n"
            "if os.fork() == 0:\n"
            "    os.setsid()\n"
            "    if os.fork() == 0:\n"
            "        signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "        signal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
            "        os.closerange(0, 1024)\n"
            "        while True:\n            time.sleep(1)\n"
            "    os._exit(0)\n"
            "subprocess.Popen(['sh', '-c', 'trap \"\" TERM INT HUP; while :; do sleep 1; done'],"
            " start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
            "time.sleep(0.3)\n"
            "print(len([p for p in os.listdir('/proc') if p.isdigit()]))\n")
        assert result.status == "ok", result.error
        assert int(result.stdout.split()[-1]) >= 3
        seen = witness.observe()
        assert len(seen) >= 3   # the escapees exist before close (the witness knows them)
    host.assert_unharmed()


def test_session_wall_time_is_enforced(runtimes: Runtimes) -> None:
    """Once the session's total wall time is spent, exec refuses."""
    rt = runtimes(limits={"session_timeout_s": 1.5, "cell_timeout_s": 1})
    with watched_session(rt) as (session, _):
        session.exec("import time\ntime.sleep(0.8)")
        session.exec("import time\ntime.sleep(0.8)")
        with pytest.raises(SessionError):
            session.exec("print(1)")


def test_limits_in_policy_are_the_small_ones() -> None:
    """Guard: the corpus runs under small limits, or the exhaustion cases would be slow."""
    assert BASE_LIMITS["memory_mb"] <= 256
    assert BASE_LIMITS["cell_timeout_s"] <= 3
