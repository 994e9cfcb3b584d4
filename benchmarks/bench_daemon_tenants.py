"""Tenant B's cell latency, alone and while tenant A attacks the same daemon.

    PYTHONPATH=. python benchmarks/bench_daemon_tenants.py [--cells 200] [--rounds 3]

The daemon runs as ``rlmbox serve`` in a process of its own, with its default limits and
the default policy (process backend). Tenant B runs trivial cells (``x = 1``) on one
session, 25 a second (within its own request rate), and times each round trip. Tenant A,
in another process, does the worst it can at once: floods session creation (past its
cap), keeps as many CPU-burning cells running as the daemon admits (``while True: pass``
on every session it got), and floods cheap requests from several threads, retrying
every refusal at once.
Each round measures B alone, then B under attack, so background load on the machine hits
both phases alike. Prints p50/p99 in milliseconds per phase and round, pooled over the
rounds, the median of the rounds' p99 ratios, and what A achieved;
``tests/daemon/test_tenant_load.py`` asserts on the same measurement.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlmbox.daemon.client import Client
from rlmbox.daemon.store import Store
from rlmbox.daemon.wire import RATE_LIMITED
from rlmbox.errors import DaemonError, RlmboxError

START_TIMEOUT_S = 60.0
BURN_CELL = "while True:\n    pass"
BURN_TIMEOUT_S = 1.0
FLOOD_THREADS = 4
CLOSE_ATTEMPTS = 5
B_INTERVAL_S = 0.04   # 25 cells/s: half the default per-tenant request rate


@dataclass
class Phase:
    samples_ms: list[float]

    def quantile(self, q: float) -> float:
        ordered = sorted(self.samples_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def p50(self) -> float:
        return self.quantile(0.50)

    @property
    def p99(self) -> float:
        return self.quantile(0.99)


@dataclass
class Round:
    alone: Phase
    attacked: Phase
    attack: dict[str, int] = field(default_factory=dict)


# --- the daemon --------------------------------------------------------------------------

@dataclass(frozen=True)
class Served:
    socket: Path
    pid: int


@contextlib.contextmanager
def serve(root: Path) -> Iterator[Served]:
    """``rlmbox serve`` with its defaults on a socket under ``root``."""
    sock = root / "d.sock"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    with (root / "daemon.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rlmbox.cli.main", "serve", "--socket", str(sock),
             "--state", str(root / "state"), "--policy", "default"],
            env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_listening(proc, sock, root / "daemon.log")
        yield Served(sock, proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(START_TIMEOUT_S)


def _wait_listening(proc: subprocess.Popen[bytes], sock: Path, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the daemon exited: {log.read_text()}")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(sock))
            except OSError:
                time.sleep(0.1)
                continue
        return
    raise RuntimeError(f"the daemon did not listen in time: {log.read_text()}")


def token(root: Path, tenant: str) -> str:
    store = Store(root / "state")
    try:
        return store.create_token(tenant)[1]
    finally:
        store.close()


# --- tenant B ----------------------------------------------------------------------------

def tenant_b(sock: Path, secret: str, cells: int) -> Phase:
    """B's cells, one every ``B_INTERVAL_S`` (within B's own request rate)."""
    with Client(socket=sock, token=secret, timeout=120) as client:
        sid = client.create_session()["id"]
        try:
            client.exec(sid, "x = 0")   # warm: the first cell pays one-off costs
            samples = []
            for _ in range(cells):
                time.sleep(B_INTERVAL_S)
                start = time.perf_counter()
                client.exec(sid, "x = 1")
                samples.append((time.perf_counter() - start) * 1000)
        finally:
            client.close_session(sid)
    return Phase(samples)


# --- tenant A ----------------------------------------------------------------------------

def attacker(sock: Path, secret: str) -> None:
    """Tenant A until stdin closes: prints a summary of what it achieved."""
    stop = threading.Event()
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    sessions: list[str] = []

    def count(key: str) -> None:
        with lock:
            outcomes[key] += 1

    def flood_sessions() -> None:
        with Client(socket=sock, token=secret, timeout=120) as client:
            while not stop.is_set():
                try:
                    sid = client.create_session()["id"]
                except RlmboxError as exc:
                    count(f"session refused {_kind(exc)}")
                    continue
                count("session opened")
                with lock:
                    sessions.append(sid)
                threading.Thread(target=burn, args=(sid,), daemon=True).start()

    def burn(sid: str) -> None:
        with Client(socket=sock, token=secret, timeout=120) as client:
            while not stop.is_set():
                try:
                    client.exec(sid, BURN_CELL, timeout=BURN_TIMEOUT_S)
                    count("cell burned")
                except RlmboxError as exc:
                    count(f"cell refused {_kind(exc)}")

    def flood_requests() -> None:
        with Client(socket=sock, token=secret, timeout=120) as client:
            while not stop.is_set():
                try:
                    client.sessions()
                    count("request served")
                except RlmboxError as exc:
                    count(f"request refused {_kind(exc)}")

    workers = [threading.Thread(target=flood_sessions, daemon=True)]
    workers += [threading.Thread(target=flood_requests, daemon=True)
                for _ in range(FLOOD_THREADS)]
    for worker in workers:
        worker.start()
    print("attacking", flush=True)
    sys.stdin.read()   # until the parent closes our stdin
    stop.set()
    for key, value in sorted(outcomes.items()):
        print(f"{key}\t{value}", flush=True)
    os._exit(0)   # burning cells may still wait on the daemon; the daemon closes them


def _kind(exc: RlmboxError) -> str:
    return exc.type if isinstance(exc, DaemonError) else type(exc).__name__


@contextlib.contextmanager
def attacking(sock: Path, secret: str, ramp_s: float) -> Iterator[dict[str, int]]:
    """Tenant A in a process of its own (its client threads must not share the
    measuring process's GIL); yields the summary, filled in when the attack ends."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    summary: dict[str, int] = {}
    with subprocess.Popen([sys.executable, __file__, "--attacker", str(sock), secret],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                          text=True) as proc:
        try:
            if proc.stdout is None or proc.stdin is None:
                raise RuntimeError("the attacker has no pipes")
            if proc.stdout.readline().strip() != "attacking":
                raise RuntimeError("the attacker did not start")
            time.sleep(ramp_s)   # sessions opened up to the cap, cells burning
            yield summary
            proc.stdin.close()
            for line in proc.stdout:
                key, _, value = line.rstrip("\n").partition("\t")
                summary[key] = int(value)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(START_TIMEOUT_S)


def measure(cells: int, rounds: int, ramp_s: float = 3.0) -> list[Round]:
    """``rounds`` of (B alone, B under A's attack) against one fresh daemon."""
    root = Path(tempfile.mkdtemp(prefix="rbx-tenants-", dir="/tmp"))
    results = []
    try:
        with serve(root) as served:
            sock = served.socket
            a_token, b_token = token(root, "tenant-a"), token(root, "tenant-b")
            for _ in range(rounds):
                alone = tenant_b(sock, b_token, cells)
                with attacking(sock, a_token, ramp_s) as summary:
                    attacked = tenant_b(sock, b_token, cells)
                results.append(Round(alone, attacked, summary))
                _close_all(sock, a_token)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return results


def median_ratio(rounds: list[Round], quantile: float) -> float:
    """The median over rounds of B's ``quantile`` under attack / alone: one round hit by
    the machine's own load (in either phase) does not decide it."""
    return statistics.median(r.attacked.quantile(quantile) / r.alone.quantile(quantile)
                             for r in rounds)


def pooled(rounds: list[Round]) -> tuple[Phase, Phase]:
    """(B alone, B attacked), every round's samples together."""
    return (Phase([x for r in rounds for x in r.alone.samples_ms]),
            Phase([x for r in rounds for x in r.attacked.samples_ms]))


def _sessions_once_rate_allows(client: Client) -> list[dict[str, Any]]:
    """A's sessions; A's flood may have spent its request rate just before the attack
    ended, so a rate refusal is waited out (a few times) instead of failing the round."""
    for _ in range(CLOSE_ATTEMPTS - 1):
        try:
            return client.sessions()
        except DaemonError as exc:
            if exc.type != RATE_LIMITED:
                raise
            time.sleep(exc.retry_after_s or 1.0)
    return client.sessions()


def _close_all(sock: Path, secret: str) -> None:
    """Ends A's sessions between rounds, so each round starts from the same state."""
    with Client(socket=sock, token=secret, timeout=120) as client:
        for info in _sessions_once_rate_allows(client):
            if info["state"] == "open":
                with contextlib.suppress(RlmboxError):
                    client.close_session(info["id"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cells", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--attacker", nargs=2, metavar=("SOCKET", "TOKEN"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.attacker:
        attacker(Path(args.attacker[0]), args.attacker[1])
        return
    rounds = measure(args.cells, args.rounds)
    print(f"bench_daemon_tenants on {platform.node()} ({platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()})")
    print(f"| {'round':<5} | {'B alone p50':>11} | {'B alone p99':>11} | "
          f"{'attacked p50':>12} | {'attacked p99':>12} | {'p99 ratio':>9} |")
    print(f"|{'-' * 7}|{'-' * 13}|{'-' * 13}|{'-' * 14}|{'-' * 14}|{'-' * 11}|")
    for n, result in enumerate(rounds, 1):
        print(f"| {n:<5} | {result.alone.p50:11.2f} | {result.alone.p99:11.2f} | "
              f"{result.attacked.p50:12.2f} | {result.attacked.p99:12.2f} | "
              f"{result.attacked.p99 / result.alone.p99:9.2f} |")
    alone, attacked = pooled(rounds)
    print(f"| {'all':<5} | {alone.p50:11.2f} | {alone.p99:11.2f} | {attacked.p50:12.2f} | "
          f"{attacked.p99:12.2f} | {attacked.p99 / alone.p99:9.2f} |")
    print(f"median of the rounds' ratios: p50 {median_ratio(rounds, 0.5):.2f}, "
          f"p99 {median_ratio(rounds, 0.99):.2f}")
    print("milliseconds per trivial cell round trip; what tenant A got, last round:")
    for key, value in sorted(rounds[-1].attack.items()):
        print(f"  {key}: {value}")


if __name__ == "__main__":
    main()
