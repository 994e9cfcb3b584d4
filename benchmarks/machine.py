"""The machine a run measured: printed at the head of every report (``run_all.sh``).

    python benchmarks/machine.py

CPU, cores, memory, kernel, the load average at start (other work on a shared machine adds
noise), Python, the Docker engine with its cgroup version and storage driver, runc and
runsc, and the file systems of Docker's root and of the temporary directory (where the
benchmarks' audit logs and the fsync floor live).
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path


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



if __name__ == "__main__":
    print("\n".join(describe_machine()))
    sys.exit(0)
