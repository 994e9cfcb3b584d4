"""rlmbox against its peers, in one run, on one engine: one table with median and p99.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_peers.py [--quick] [--machine]

Measured, each where it runs on this machine:
  * rlmbox on process, docker/runc and docker/runsc: session start cold (pool disabled) and
    from the warm pool, session close, trivial cell round trip and ``llm_query`` round trip
    (instant scripted LM), with durability "cell" and "session";
  * rlms' DockerREPL (one ``docker exec`` and a dill-pickled namespace per cell, ``llm_query``
    over HTTP to a host proxy) with an instant rlms LM handler, on runc and runsc;
  * llm-sandbox's Docker session (a fresh ``python`` per cell, no state between cells);
  * in-process, unisolated: rlms' LocalREPL, RestrictedPython, smolagents' executor.
The container peers run in the peer image (``peer_images/``), built offline over rlmbox's
image. ``llm_query`` round trips are timed inside the sandbox around each call; everything
else is wall time on the host. A peer that fails is a row saying how, not a missing row.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from rlmbox.lm.scripted import ScriptedLM
from rlmbox.policies.model import Policy, policy_from_data, preset_text
from rlmbox.runtime.runtime import Runtime

PEER_LABEL = "org.rlmbox.bench-peer"
TRIVIAL = "x = 1"
# Timed inside the sandbox, so the figure is the call itself, not the cell around it.
LLM_LOOP = """
import time as _t, json as _j
_s = []
for _i in range({n}):
    _a = _t.perf_counter()
    _r = llm_query('ping')
    _s.append(_t.perf_counter() - _a)
print(_j.dumps({{"samples": _s, "reply": str(_r)[:1000]}}))
"""


@dataclass(frozen=True)
class Reps:
    starts: int
    cells: int
    calls: int
    peer_starts: int
    peer_cells: int
    slow_closes: int   # llm-sandbox on runc takes ~10 s to close


QUICK = Reps(starts=5, cells=200, calls=100, peer_starts=2, peer_cells=10, slow_closes=1)
FULL = Reps(starts=20, cells=1000, calls=400, peer_starts=5, peer_cells=40, slow_closes=3)


@dataclass
class Table:
    rows: list[tuple[str, str, str, str, str, str]] = field(default_factory=list)

    def add(self, system: str, measure: str, samples: list[float], note: str = "") -> None:
        if not samples:
            self.fail(system, measure, note or "no samples")
            return
        ordered = sorted(samples)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        self.rows.append((system, measure, fmt(statistics.median(ordered)), fmt(p99),
                          str(len(ordered)), note))

    def fail(self, system: str, measure: str, why: str) -> None:
        self.rows.append((system, measure, "—", "—", "0", why.replace("|", "/")[:120]))
        print(f"[bench_peers] {system}: {measure}: {why}", file=sys.stderr)

    def render(self) -> str:
        head = ("system", "measure", "median", "p99", "n", "note")
        widths = [max(len(r[i]) for r in [head, *self.rows]) for i in range(len(head))]
        lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
                 for row in [head, *self.rows]]
        lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
        return "\n".join(lines)


def fmt(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def timed(fn: Callable[[], object], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return samples


def loop_result(stdout: str) -> tuple[list[float], str]:
    """Samples and last reply printed by LLM_LOOP (the last JSON line of the output)."""
    for line in reversed(stdout.strip().splitlines()):
        with contextlib.suppress(ValueError):
            data = json.loads(line)
            return [float(s) for s in data["samples"]], str(data["reply"])
    return [], f"no timing line in the output: {stdout[-160:]!r}"


def errno(reply: str) -> str:
    """The OS error inside a requests error message, which is otherwise mostly URL."""
    start = reply.find("[Errno")
    if start < 0:
        return reply
    return reply[start:].split("'", 1)[0].split('"', 1)[0].rstrip(")")


# --- the machine ---------------------------------------------------------------------------

def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0] if lines else "unavailable"


def describe_machine() -> list[str]:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")),
               platform.machine())
    mem = Path("/proc/meminfo").read_text().split()[1]
    fmt_docker = "{{.ServerVersion}}, cgroup v{{.CgroupVersion}} ({{.CgroupDriver}}), " \
                 "storage {{.Driver}}, root {{.DockerRootDir}}"
    docker_info = _first_line(["docker", "info", "--format", fmt_docker])
    root = docker_info.rsplit("root ", 1)[-1] if "root " in docker_info else "/"
    fs_of = {}
    for label, path in (("docker root", root), ("tmp", tempfile.gettempdir())):
        df = _first_line(["sh", "-c", f"df -T {shlex.quote(path)} | tail -1"]).split()
        fs_of[label] = f"{df[1]} on {df[0]}" if len(df) > 1 else "?"
    distro = _first_line(["sh", "-c", ". /etc/os-release; echo $PRETTY_NAME"])
    return [
        f"cpu: {cpu}, {os.cpu_count()} cores; memory {int(mem) / 2**20:.1f} GiB",
        f"kernel: Linux {platform.release()}; {distro}",
        f"load average at start: {os.getloadavg()[0]:.2f} (other work on the machine adds noise)",
        f"python: {platform.python_version()} ({sys.executable})",
        f"docker engine: {docker_info}",
        f"runc: {_first_line(['runc', '--version'])}",
        f"runsc: {_first_line(['runsc', '--version'])} (platform ptrace, network none)",
        f"filesystem: docker root {fs_of['docker root']}; tmp {fs_of['tmp']}",
    ]


# --- rlmbox ----------------------------------------------------------------------------

def bench_policy(backend: str, runtime: str | None) -> Policy:
    """The default preset on the given backend, with a call budget a benchmark cannot hit."""
    data = yaml.safe_load(preset_text("default"))
    data["name"] = f"bench-{backend}-{runtime or 'host'}"
    data["isolation"]["backend"] = backend
    if runtime is not None:
        data["isolation"]["runtime"] = runtime
    data["budgets"]["tree"]["calls"] = 10**9
    return policy_from_data(data)


def bench_rlmbox(table: Table, backend: str, runtime: str | None, reps: Reps) -> None:
    system = f"rlmbox {backend}" + (f"/{runtime}" if runtime else "")
    policy = bench_policy(backend, runtime)
    lm = ScriptedLM(default="ok")
    with tempfile.TemporaryDirectory(prefix="bench-peers-audit-") as audit:
        with Runtime(policy, lm=lm, audit_dir=audit, pool_size=0) as rt:
            rt.session().close()   # the isolation probe runs once, outside the timing
            opens, closes = [], []
            for _ in range(reps.starts):
                started = time.perf_counter()
                session = rt.session()
                opened = time.perf_counter()
                session.close()
                opens.append(opened - started)
                closes.append(time.perf_counter() - opened)
            table.add(system, "session start, cold (no pool)", opens)
            table.add(system, "session close", closes)
        with Runtime(policy, lm=lm, audit_dir=audit, pool_size=1) as rt:
            rt.warm_up()
            pool = rt.pool()   # refill outside the timing
            assert pool is not None
            warm = []
            for _ in range(reps.starts):
                pool.wait_full(60)
                started = time.perf_counter()
                session = rt.session()
                warm.append(time.perf_counter() - started)
                session.close()
            table.add(system, "session start, warm pool", warm)
        for durability in ("cell", "session"):
            with Runtime(policy, lm=lm, audit_dir=audit, pool_size=0,
                         durability=durability) as rt, rt.session() as session:
                label = f"{system} ({durability} durability)"
                first = session.exec(TRIVIAL)
                if first.status != "ok":
                    table.fail(label, "trivial cell round trip", f"{first.status}: {first.error}")
                    continue
                timed(partial(session.exec, TRIVIAL), 20)   # warm the path
                table.add(label, "trivial cell round trip",
                          timed(partial(session.exec, TRIVIAL), reps.cells))
                result = session.exec(LLM_LOOP.format(n=reps.calls))
                samples, reply = loop_result(result.stdout)
                if result.status != "ok" or reply != "ok":
                    table.fail(label, "llm_query round trip", f"{result.error or reply}")
                else:
                    table.add(label, "llm_query round trip (timed inside)", samples)


# --- rlms DockerREPL -------------------------------------------------------------------------

def instant_rlms_handler() -> Any:
    """An rlms LMHandler whose client answers at once: the path is measured, not a model."""
    from bench_adapters import InstantLM  # the same instant client the adapters bench uses
    from rlm.core.lm_handler import LMHandler

    handler = LMHandler(InstantLM())
    handler.start()
    return handler


@contextlib.contextmanager
def docker_cli_runtime(runtime: str, token: str) -> Iterator[Path]:
    """DockerREPL calls the ``docker`` CLI and has no runtime option: a wrapper first on
    PATH adds ``--runtime`` and our label to ``docker run`` (for runc too, so both pay the
    same extra exec). Yields a scratch directory for DockerREPL's workspace."""
    real = shutil.which("docker")
    if real is None:
        raise RuntimeError("no docker CLI on PATH")
    saved = {k: os.environ.get(k) for k in ("PATH", "RLM_DOCKER_WORKSPACE_DIR")}
    with tempfile.TemporaryDirectory(prefix="bench-peers-cli-") as tmp:
        shim = Path(tmp) / "bin" / "docker"
        shim.parent.mkdir()
        shim.write_text(
            "#!/bin/sh\n"
            f'if [ "$1" = run ]; then shift; exec {shlex.quote(real)} run '
            f"--runtime={shlex.quote(runtime)} --label {PEER_LABEL}={token} \"$@\"; fi\n"
            f'exec {shlex.quote(real)} "$@"\n')
        shim.chmod(0o755)
        os.environ["PATH"] = f"{shim.parent}{os.pathsep}{saved['PATH'] or ''}"
        os.environ["RLM_DOCKER_WORKSPACE_DIR"] = str(Path(tmp) / "workspace")
        try:
            yield Path(tmp)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def bench_docker_repl(table: Table, image: str, runtime: str, reps: Reps, token: str) -> None:
    from rlm.environments.docker_repl import DockerREPL

    system = f"rlms DockerREPL {runtime}"
    handler = instant_rlms_handler()
    try:
        with docker_cli_runtime(runtime, token):
            opens, closes = [], []
            for _ in range(reps.peer_starts):
                started = time.perf_counter()
                repl = DockerREPL(image=image, lm_handler_address=handler.address)
                opens.append(time.perf_counter() - started)
                started = time.perf_counter()
                repl.cleanup()
                closes.append(time.perf_counter() - started)
            table.add(system, "session start (docker run + setup)", opens)
            table.add(system, "session close", closes)
            repl = DockerREPL(image=image, lm_handler_address=handler.address)
            try:
                first = repl.execute_code(TRIVIAL)
                if first.stderr:
                    table.fail(system, "trivial cell round trip", first.stderr)
                else:
                    table.add(system, "trivial cell round trip",
                              timed(lambda: repl.execute_code(TRIVIAL), reps.peer_cells))
                result = repl.execute_code(LLM_LOOP.format(n=reps.peer_cells))
                samples, reply = loop_result(result.stdout)
                if reply != "ok":
                    took = f" after {fmt(statistics.median(samples))}" if samples else ""
                    table.fail(system, "llm_query round trip", f"fails{took}: {errno(reply)}")
                else:
                    table.add(system, "llm_query round trip (timed inside)", samples)
            finally:
                repl.cleanup()
    finally:
        handler.stop()


# --- llm-sandbox -----------------------------------------------------------------------

def bench_llm_sandbox(table: Table, image: str, runtime: str, reps: Reps, token: str) -> None:
    from llm_sandbox import SandboxSession

    system = f"llm-sandbox {runtime}"

    def new_session() -> Any:
        # skip_environment_setup: its setup makes a venv and upgrades pip from PyPI.
        return SandboxSession(lang="python", image=image, skip_environment_setup=True,
                              runtime_configs={"runtime": runtime,
                                               "labels": {PEER_LABEL: token}})

    opens, closes = [], []
    for _ in range(reps.slow_closes):
        session = new_session()
        started = time.perf_counter()
        session.open()
        opens.append(time.perf_counter() - started)
        started = time.perf_counter()
        session.close()
        closes.append(time.perf_counter() - started)
    table.add(system, "session open", opens)
    table.add(system, "session close", closes,
              "stop() waits 10 s for python as pid 1" if min(closes) > 5 else "")
    session = new_session()
    session.open()
    try:
        first = session.run(TRIVIAL)
        if first.exit_code != 0:
            table.fail(system, "trivial cell round trip", first.stderr)
            return
        kept = session.run("print(x)").exit_code == 0
        table.add(system, "trivial cell round trip",
                  timed(lambda: session.run(TRIVIAL), reps.peer_cells),
                  "" if kept else "no state kept between cells")
        table.fail(system, "llm_query round trip", "no host-call channel (not offered)")
    finally:
        session.close()


# --- in-process peers (no isolation) ------------------------------------------------------

def bench_in_process(table: Table, reps: Reps) -> None:
    with contextlib.suppress(ImportError):
        from rlm.environments.local_repl import LocalREPL

        repl = LocalREPL()
        table.add("rlms LocalREPL (in-process)", "trivial cell round trip",
                  timed(lambda: repl.execute_code(TRIVIAL), reps.cells))
        repl.cleanup()
    with contextlib.suppress(ImportError):
        from RestrictedPython import (  # type: ignore[attr-defined]
            compile_restricted,
            safe_globals,
        )

        def restricted() -> None:
            exec(compile_restricted(TRIVIAL, "<cell>", "exec"), dict(safe_globals))  # noqa: S102

        table.add("RestrictedPython (in-process)", "trivial cell compile+exec",
                  timed(restricted, reps.cells))
    try:
        from smolagents.local_python_executor import (
            LocalPythonExecutor,
        )
    except ImportError:
        table.fail("smolagents LocalPythonExecutor", "trivial cell round trip", "not installed")
        return
    executor = LocalPythonExecutor(additional_authorized_imports=[])
    executor.send_tools({})
    table.add("smolagents LocalPythonExecutor (in-process)", "trivial cell round trip",
              timed(lambda: executor(TRIVIAL), reps.cells))


# --- the run -----------------------------------------------------------------------------

def remove_labelled(client: Any, token: str) -> int:
    """Removes every container a peer left behind with our label; the count removed."""
    leftovers = client.containers.list(all=True, filters={"label": f"{PEER_LABEL}={token}"})
    for container in leftovers:
        with contextlib.suppress(Exception):
            container.remove(force=True)
    return len(leftovers)


def guarded(table: Table, system: str, fn: Callable[[], None]) -> None:
    """Runs one section; a failure becomes a row instead of ending the run."""
    try:
        fn()
    except Exception as exc:  # a peer failing is a result to report
        table.fail(system, "(section)", f"{type(exc).__name__}: {exc}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--machine", action="store_true", help="print the machine and exit")
    args = parser.parse_args()
    if args.machine:
        print("\n".join(describe_machine()))
        return 0
    reps = QUICK if args.quick else FULL
    table = Table()
    started = time.monotonic()
    guarded(table, "rlmbox process", lambda: bench_rlmbox(table, "process", None, reps))
    token = f"{os.getpid()}-{int(time.time())}"
    client = None
    try:
        from peer_images.build import ensure_peer_image

        from rlmbox.sandboxes.docker.engine import connect, runtimes
        from rlmbox.sandboxes.images.build import ensure_image

        client = connect()
        available = sorted(runtimes(client) & {"runc", "runsc"})
        base = ensure_image(client, log=lambda _msg: None)
        peer_image = ensure_peer_image(client, base)
    except Exception as exc:  # no engine: in-process rows still run
        table.fail("docker", "(engine)", f"{type(exc).__name__}: {exc}")
        available, peer_image = [], ""
    try:
        for runtime in available:
            guarded(table, f"rlmbox docker/{runtime}",
                    partial(bench_rlmbox, table, "docker", runtime, reps))
        for runtime in available:
            guarded(table, f"rlms DockerREPL {runtime}",
                    partial(bench_docker_repl, table, peer_image, runtime, reps, token))
        for runtime in available:
            guarded(table, f"llm-sandbox {runtime}",
                    partial(bench_llm_sandbox, table, peer_image, runtime, reps, token))
    finally:
        left = remove_labelled(client, token) if client is not None else 0
    guarded(table, "in-process peers", lambda: bench_in_process(table, reps))
    print(f"## rlmbox and its peers ({'quick' if args.quick else 'full'} run, "
          f"{time.monotonic() - started:.0f} s; peer image {peer_image or 'none'})\n")
    print(table.render())
    if left:
        print(f"\n(removed {left} container(s) a peer left behind)")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))   # for peer_images
    sys.exit(main())
