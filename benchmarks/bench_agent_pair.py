"""Two agent bundles, paired: cold and warm ``session()`` on the process backend, A B A B.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_agent_pair.py BUNDLE_A [-n 30]

``BUNDLE_A`` is another checkout's agent bundle directory (print it there with
``python -c "from rlmbox.sandboxes.bundle import agent_bundle_dir as d; print(d())"``);
B is this checkout's. One runtime serves both, so the host code, the machine's load and
the audit log are shared and only the code inside the sandbox differs: for a change to the
agent, a paired ratio holds on a machine too noisy for two separate runs to compare.
Prints each side's median and the per-pair ratio B/A of: cold ``session()``, the sandbox's
CPU time up to ``ready`` (its cgroup's, root only), the first cell after it, and warm
``session()`` (a pool of one, full before).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from stack import stack_policy

import rlmbox.sandboxes.process.backend as process_backend
from rlmbox.lm.scripted import ScriptedLM
from rlmbox.runtime.runtime import Runtime
from rlmbox.sandboxes.bundle import agent_bundle_dir

Samples = dict[str, dict[Path, list[float]]]


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1e3


def _pairs(bundles: tuple[Path, Path], n: int, one: Callable[[Path], None]) -> None:
    for i in range(n):   # the order alternates too: neither always runs second
        for bundle in bundles if i % 2 == 0 else bundles[::-1]:
            one(bundle)


def measure(bundle_a: Path, n: int) -> Samples:
    bundles = (bundle_a, agent_bundle_dir())
    current = [bundles[1]]
    process_backend.agent_bundle_dir = lambda: current[0]   # type: ignore[attr-defined]
    samples: Samples = {name: {b: [] for b in bundles}
                        for name in ("cold", "cpu_at_ready", "first_cell", "warm")}
    await_ready = process_backend.ProcessSandbox._await_ready

    def timed_ready(sandbox: process_backend.ProcessSandbox) -> int:
        pid = await_ready(sandbox)
        if sandbox._cgroup is not None:
            samples["cpu_at_ready"][current[0]].append(sandbox._cgroup.cpu_seconds() * 1e3)
        return pid

    process_backend.ProcessSandbox._await_ready = timed_ready  # type: ignore[method-assign,assignment]
    policy, lm = stack_policy("process", None), ScriptedLM(default="ok")
    with tempfile.TemporaryDirectory(prefix="bench-agent-pair-") as audit:
        with Runtime(policy, lm=lm, audit_dir=audit, pool_size=0) as rt:
            def cold(bundle: Path) -> None:
                current[0] = bundle
                started = time.perf_counter()
                session = rt.session()
                samples["cold"][bundle].append(_ms(started))
                started = time.perf_counter()
                session.exec("x = 1")
                samples["first_cell"][bundle].append(_ms(started))
                session.close()

            for bundle in bundles:   # the probe and the page cache, outside the timing
                current[0] = bundle
                rt.session().close()
            samples["cpu_at_ready"] = {b: [] for b in bundles}
            _pairs(bundles, n, cold)
        with Runtime(policy, lm=lm, audit_dir=audit, pool_size=1) as rt:
            rt.warm_up()
            pool = rt.pool()
            assert pool is not None

            def warm(bundle: Path) -> None:
                current[0] = bundle
                pool.wait_full(120)
                pool.acquire()[0].kill()   # the one pooled was made with the other bundle
                pool.wait_full(120)
                started = time.perf_counter()
                session = rt.session()
                samples["warm"][bundle].append(_ms(started))
                session.close()

            _pairs(bundles, n, warm)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("bundle_a", type=Path)
    parser.add_argument("-n", type=int, default=30, help="pairs per figure")
    args = parser.parse_args()
    samples = measure(args.bundle_a, args.n)
    for name, by_bundle in samples.items():
        a, b = by_bundle.values()
        if not a or not b:
            continue
        ratio = statistics.median(y / x for x, y in zip(a, b, strict=False))
        print(f"{name:13} A median {statistics.median(a):8.3f} ms  B median "
              f"{statistics.median(b):8.3f} ms  B/A per pair {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
