"""rlmbox's peers, in one run, on one engine: one table with median, p99 and floors.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_peers.py [--quick | --smoke]

Measured, each where it runs on this machine (rlmbox's own rows are bench_stack.py's, so
one method measures rlmbox everywhere; this table is the peers, with the same floors):
  * rlms' DockerREPL (one ``docker exec`` and a dill-pickled namespace per cell, ``llm_query``
    over HTTP to a host proxy) with an instant rlms LM handler, on runc and runsc;
  * llm-sandbox's Docker session (a fresh ``python`` per cell, no state between cells);
  * in-process, unisolated: rlms' LocalREPL, RestrictedPython, smolagents' executor.
The container peers run in the peer image (``peer_images/``), built offline over rlmbox's
image. ``llm_query`` round trips are timed inside the sandbox around each call; everything
else is wall time on the host. A peer that fails is a row saying how, not a missing row.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import floors
from figures import Table, fmt, timed
from floors import EXEC, PIPE, docker_run
from modes import chosen, mode_parser
from stack import BACKENDS_ENV, LLM_LOOP, loop_result, stack_policy

PEER_LABEL = "org.rlmbox.bench-peer"
TRIVIAL = "x = 1"


@dataclass(frozen=True)
class Reps:
    cells: int
    peer_starts: int
    peer_cells: int
    slow_closes: int   # llm-sandbox on runc takes ~10 s to close


SMOKE = Reps(cells=5, peer_starts=1, peer_cells=2, slow_closes=1)
QUICK = Reps(cells=200, peer_starts=2, peer_cells=10, slow_closes=1)
FULL = Reps(cells=1000, peer_starts=5, peer_cells=40, slow_closes=3)


def errno(reply: str) -> str:
    """The OS error inside a requests error message, which is otherwise mostly URL."""
    start = reply.find("[Errno")
    if start < 0:
        return reply
    return reply[start:].split("'", 1)[0].split('"', 1)[0].rstrip(")")


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
            table.add(system, "session start (docker run + setup)", opens,
                      floor=(docker_run(runtime),))
            table.add(system, "session close", closes)
            repl = DockerREPL(image=image, lm_handler_address=handler.address)
            try:
                first = repl.execute_code(TRIVIAL)
                if first.stderr:
                    table.fail(system, "trivial cell round trip", first.stderr)
                else:
                    table.add(system, "trivial cell round trip",
                              timed(lambda: repl.execute_code(TRIVIAL), reps.peer_cells),
                              floor=(PIPE, EXEC))
                result = repl.execute_code(LLM_LOOP.format(n=reps.peer_cells))
                samples, reply = loop_result(result.stdout)
                if reply != "ok":
                    took = f" after {fmt(statistics.median(samples))}" if samples else ""
                    table.fail(system, "llm_query round trip", f"fails{took}: {errno(reply)}")
                else:
                    table.add(system, "llm_query round trip (timed inside)", samples,
                              floor=(PIPE,))
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
    table.add(system, "session open", opens, floor=(docker_run(runtime),))
    table.add(system, "session close", closes,
              note="stop() waits 10 s for python as pid 1" if min(closes) > 5 else "")
    session = new_session()
    session.open()
    try:
        first = session.run(TRIVIAL)
        if first.exit_code != 0:
            table.fail(system, "trivial cell round trip", first.stderr)
            return
        kept = session.run("print(x)").exit_code == 0
        table.add(system, "trivial cell round trip",
                  timed(lambda: session.run(TRIVIAL), reps.peer_cells), floor=(PIPE, EXEC),
                  note="" if kept else "no state kept between cells")
        table.fail(system, "llm_query round trip", "no host-call channel (not offered)")
    finally:
        session.close()


# --- in-process peers (no isolation) ------------------------------------------------------

def bench_in_process(table: Table, reps: Reps) -> None:
    with contextlib.suppress(ImportError):
        from rlm.environments.local_repl import LocalREPL

        repl = LocalREPL()
        table.add("rlms LocalREPL (in-process)", "trivial cell round trip",
                  timed(lambda: repl.execute_code(TRIVIAL), reps.cells), floor=(EXEC,))
        repl.cleanup()
    with contextlib.suppress(ImportError):
        from RestrictedPython import (  # type: ignore[attr-defined]
            compile_restricted,
            safe_globals,
        )

        def restricted() -> None:
            exec(compile_restricted(TRIVIAL, "<cell>", "exec"), dict(safe_globals))  # noqa: S102

        table.add("RestrictedPython (in-process)", "trivial cell compile+exec",
                  timed(restricted, reps.cells), floor=(EXEC,))
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
              timed(lambda: executor(TRIVIAL), reps.cells), floor=(EXEC,))


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


def engine_and_peer_image(table: Table) -> tuple[Any, list[str], str]:
    """The engine, its runtimes among runc and runsc, and the peer image (built when
    missing); no engine is a row saying why, and the in-process peers still run."""
    try:
        from peer_images.build import ensure_peer_image

        from rlmbox.sandboxes.docker.engine import connect, runtimes
        from rlmbox.sandboxes.images.build import ensure_image

        client = connect()
        available = sorted(runtimes(client) & {"runc", "runsc"})
        return client, available, ensure_peer_image(client, ensure_image(
            client, log=lambda _msg: None))
    except Exception as exc:  # no engine: in-process rows still run
        table.fail("docker", "(engine)", f"{type(exc).__name__}: {exc}")
        return None, [], ""


def main() -> int:
    parser = mode_parser(__doc__)
    args = parser.parse_args()
    reps = chosen(args, smoke=SMOKE, quick=QUICK, full=FULL)
    table = Table("peers: other REPLs and sandboxes, same machine, same engine")
    started = time.monotonic()
    token = f"{os.getpid()}-{int(time.time())}"
    client: Any = None
    available: list[str] = []
    peer_image = ""
    if os.environ.get(BACKENDS_ENV) != "process":   # the smoke test keeps to in-process
        client, available, peer_image = engine_and_peer_image(table)
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as scratch:
        table.floors = floors.measure(
            [PIPE, EXEC, *[docker_run(r) for r in available]], table=table.title,
            reps=reps.cells * 5, starts=max(3, reps.peer_starts), audit_dir=Path(scratch),
            policy=stack_policy("process", None), image=peer_image or None)
    try:
        for runtime in available:
            guarded(table, f"rlms DockerREPL {runtime}",
                    partial(bench_docker_repl, table, peer_image, runtime, reps, token))
        for runtime in available:
            guarded(table, f"llm-sandbox {runtime}",
                    partial(bench_llm_sandbox, table, peer_image, runtime, reps, token))
    finally:
        left = remove_labelled(client, token) if client is not None else 0
    guarded(table, "in-process peers", lambda: bench_in_process(table, reps))
    removed = f"; removed {left} container(s) a peer left behind" if left else ""
    table.print(f"{'smoke' if args.smoke else 'quick' if args.quick else 'full'} run, "
                f"{time.monotonic() - started:.0f} s; peer image {peer_image or 'none'}"
                f"{removed}. rlmbox's own rows, on the same backends: the full-stack table "
                "(bench_stack.py)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
