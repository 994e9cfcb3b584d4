"""Attacks through ``context.search``: the model's regex runs in a host process, so that
process must be a jail of its own, and its time must be the cell's.

The searcher is found from the host through ``/proc`` while a catastrophic pattern keeps it
busy, and inspected there: its environment, its uid, its network namespace, its seccomp
mode. No hook inside the searcher is trusted to report on itself.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from pathlib import Path

import pytest

from rlmbox.errors import PolicyDenied
from rlmbox.policies.model import ContextPolicy
from rlmbox.runtime import context as context_module
from rlmbox.runtime.context import ContextStore
from rlmbox.runtime.hostfns import context_functions
from rlmbox.sandboxes.base import ResourceLimits

from .harness import BASE_LIMITS, Runtimes

FAKE_KEY = "sk-ant-fake-searcher-canary-5f1e"
CATASTROPHIC = r"(a+)+$"
EXPONENTIAL_TEXT = "a" * 40 + "!"


def _searcher_pids() -> list[int]:
    """Host pids of running search programs: the Python program itself, not bwrap around
    it nor a step of the jail's entry (sh, prlimit, unshare, setpriv), whose command lines
    name the program too before they exec it."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            exe = os.readlink(entry / "exe")
        except OSError:
            continue
        if any(Path(a.decode(errors="replace")).name == "context_search.py" for a in argv) \
                and Path(exe).name.startswith("python"):
            found.append(int(entry.name))
    return found


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def test_the_searcher_has_no_key_no_root_no_network_and_a_syscall_filter(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    monkeypatch.setattr(context_module, "SEARCH_TIMEOUT_S", 4.0)
    store = ContextStore(EXPONENTIAL_TEXT, tmp_path, ContextPolicy(mode="gated"))
    errors: list[BaseException] = []

    def search() -> None:
        try:
            store.search(CATASTROPHIC, 1)
        except ValueError as exc:
            errors.append(exc)

    worker = threading.Thread(target=search)
    worker.start()
    try:
        deadline = time.monotonic() + 3.0
        pids: list[int] = []
        while not pids and time.monotonic() < deadline:
            pids = _searcher_pids()
            time.sleep(0.02)
        assert pids, "no search program was seen running"
        for pid in pids:
            # confinement is installed before the regex runs; on a loaded host start-up may
            # take a while, so wait for it (the regex runs for seconds) instead of guessing
            settle = time.monotonic() + 3.0
            while _status(pid)["Seccomp"] != "2" and time.monotonic() < settle:
                time.sleep(0.02)
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            assert FAKE_KEY.encode() not in environ
            assert b"ANTHROPIC_API_KEY" not in environ
            status = _status(pid)
            assert status["Uid"].split()[0] != "0"
            assert status["Seccomp"] == "2"          # a filter is installed
            assert status["NoNewPrivs"] == "1"
            assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
    finally:
        worker.join(30)
        store.close()
    assert not worker.is_alive()
    assert errors, "the catastrophic search was not stopped"


def test_a_catastrophic_search_loop_ends_with_the_cell(backend: str,
                                                       runtimes: Runtimes) -> None:
    """Pattern after pattern, each search ends by the cell's deadline, not 10 s later, and
    the searchers' CPU stays within the cell's time."""
    rt = runtimes(context={"mode": "gated"},
                  rules=[{"id": "ctx", "effect": "permit", "function": "context.*"}])
    limit = BASE_LIMITS["cell_timeout_s"] + BASE_LIMITS["interrupt_grace_s"]
    with rt.session(context=EXPONENTIAL_TEXT) as session:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        result = session.exec(
            "tries = 0\n"
            "while True:\n"
            "    try:\n"
            f"        context.search({CATASTROPHIC!r}, 1)\n"
            "    except Exception:\n"
            "        tries += 1\n")
        elapsed = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert result.status in ("interrupted", "error", "killed"), result
    assert elapsed < limit + 2.0, elapsed
    children_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert children_cpu < limit + 1.0, children_cpu


def test_searches_draw_on_the_sessions_cpu_seconds(tmp_path: Path) -> None:
    """Search CPU counts against ``limits.cpu_seconds``: each search may use only what is
    left, and once it is spent searches are refused."""
    store = ContextStore(EXPONENTIAL_TEXT, tmp_path, ContextPolicy(mode="gated"),
                         limits=ResourceLimits(cpu_seconds=3))
    refused: PolicyDenied | None = None
    stopped: list[str] = []
    try:
        # each search stops at its wall time; on a loaded host it may get little CPU in
        # that time, so keep searching (bounded) until the 3 CPU-seconds are spent
        give_up = time.monotonic() + 120
        while time.monotonic() < give_up:
            try:
                store.search(CATASTROPHIC, 1)
            except PolicyDenied as exc:
                refused = exc
                break
            except ValueError as exc:
                stopped.append(str(exc))
    finally:
        store.close()
    assert stopped
    assert all("longer than" in message for message in stopped), stopped
    assert refused is not None, "searches kept running past the session's CPU seconds"
    assert refused.rule_ids == ("limits.cpu_seconds",)
    assert 2.0 <= store.search_cpu_seconds <= 3.5   # measured on the host, not reported


def test_model_code_cannot_pass_its_own_search_deadline(tmp_path: Path) -> None:
    """The deadline is the host's: ``context.search`` binds only pattern and max_hits."""
    store = ContextStore("abc", tmp_path, ContextPolicy(mode="gated"))
    try:
        search = next(f for f in context_functions(store) if f.name == "context.search")
        assert search.params == ("pattern", "max_hits")
        with pytest.raises(TypeError, match="unexpected argument 'deadline'"):
            search.bind(["a"], {"deadline": 1e18})
    finally:
        store.close()
