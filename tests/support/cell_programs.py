"""Cells the CPU-limit tests run in a sandbox."""

from __future__ import annotations


def fork_burn(seconds_each: float, children: int = 3) -> str:
    """A cell whose ``children`` forked processes each burn ``seconds_each`` of CPU, then
    print ``done``: under ``cpu_seconds: 1`` three of 0.7 s pass the sandbox's allowance
    although each stays under RLIMIT_CPU's per-process 1 s."""
    return f"""
import os, time
kids = []
for _ in range({children}):
    pid = os.fork()
    if pid == 0:
        t = time.process_time()
        while time.process_time() - t < {seconds_each}:
            pass
        os._exit(0)
    kids.append(pid)
for pid in kids:
    os.waitpid(pid, 0)
print('done')
"""
