"""Limits hold against hostile cells: time, output, memory, processes, and the session end."""

from __future__ import annotations

import os
import resource
from collections.abc import Callable
from pathlib import Path

import pytest

from rlmbox.errors import SessionKilled
from rlmbox.runtime.runtime import Runtime


def sandbox_processes(sandbox_id: str) -> list[int]:
    """Host pids in the sandbox's cgroup, found from /proc (not from the sandbox's word)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                text = Path(f"/proc/{entry}/cgroup").read_text()
            except OSError:
                continue
            if f"/rlmbox/{sandbox_id}" in text:
                pids.append(int(entry))
    return pids


def test_infinite_loop_is_interrupted_and_state_is_kept(runtime: Runtime) -> None:
    with runtime.session() as s:
        s.exec("kept = 'yes'")
        r = s.exec("while True:\n    pass", timeout=1)
        after = s.exec("print(kept)")
    assert r.status == "interrupted"
    assert after.status == "ok"
    assert after.stdout == "yes\n"


def test_sigint_ignoring_loop_is_killed_and_session_reports_it(runtime: Runtime) -> None:
    with runtime.session() as s:
        r = s.exec("import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                   "while True:\n    time.sleep(0.01)", timeout=1)
        assert r.status == "killed"
        assert "ignored the interrupt" in (r.error or "")
        with pytest.raises(SessionKilled, match="ignored the interrupt"):
            s.exec("1")


def test_output_flood_is_capped_and_host_memory_stays_bounded(
        make_runtime: Callable[..., Runtime]) -> None:
    """200 MiB through the cap (the stop at output_stop_bytes raised out of the way)."""
    runtime = make_runtime(limits={"output_stop_bytes": 512 << 20})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with runtime.session() as s:
        r = s.exec("import sys\nchunk = 'x' * (1 << 20)\n"
                   "for _ in range(200):\n    sys.stdout.write(chunk)\nprint('end')")
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert r.status == "ok"
    assert r.truncated
    assert r.dropped["stdout"] >= 200 * (1 << 20) - 65536
    assert len(r.stdout) < 65536 + 200
    assert "output truncated" in r.stdout
    assert grown_kib < 64 * 1024   # the host never held the flood


def test_subprocess_output_is_captured(runtime: Runtime) -> None:
    with runtime.session() as s:
        r = s.exec("import os, subprocess\nos.system('echo from-shell')\n"
                   "subprocess.run(['sh', '-c', 'echo err-line >&2'])\n"
                   "os.write(1, b'raw-fd\\n')")
    assert "from-shell\n" in r.stdout
    assert "raw-fd\n" in r.stdout
    assert "err-line\n" in r.stderr


def test_fork_bomb_is_contained_and_host_unaffected(runtime: Runtime) -> None:
    with runtime.session() as s:
        sandbox_id = s.sandbox.info.sandbox_id
        r = s.exec("import os\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n"
                   "            import time; time.sleep(30); os._exit(0)\n        n += 1\n"
                   "except OSError as e:\n    print('stopped after', n, e.errno)")
        assert r.status in ("ok", "killed")
        if r.status == "ok":
            forks = int(r.stdout.split()[2])
            assert forks < 64
    assert sandbox_processes(sandbox_id) == []
    assert os.path.exists("/proc/self")  # the host process is alive and well


def test_memory_bomb_ends_the_cell_with_a_clear_status(runtime: Runtime) -> None:
    with runtime.session() as s:
        r = s.exec("blocks = []\nwhile True:\n    blocks.append(bytearray(16 << 20))")
    assert r.status in ("error", "killed")
    text = r.error or ""
    assert "MemoryError" in text or "out of memory" in text


def test_session_end_kills_setsid_double_fork_escapees(runtime: Runtime) -> None:
    s = runtime.session()
    r = s.exec("import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
               "        time.sleep(300)\n    os._exit(0)\ntime.sleep(0.2)\n"
               "print(len([p for p in os.listdir('/proc') if p.isdigit()]))")
    assert r.status == "ok"
    assert int(r.stdout) >= 2
    sandbox_id = s.sandbox.info.sandbox_id
    assert len(sandbox_processes(sandbox_id)) >= 3   # agent, escapee, and bwrap's init
    s.close()
    assert sandbox_processes(sandbox_id) == []


def test_cell_wall_time_counts_on_the_host(runtime: Runtime) -> None:
    with runtime.session() as s:
        r = s.exec("import time; time.sleep(0.3)")
    assert r.duration_s >= 0.3


def test_context_file_is_not_writable(runtime: Runtime, tmp_path: Path) -> None:
    with runtime.session(context="ctx") as s:
        r = s.exec("open('/rlmbox/stage/context.txt', 'a').write('x')")
    assert r.status == "error"
    assert "OSError" in (r.error or "") or "PermissionError" in (r.error or "")
