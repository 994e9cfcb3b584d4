"""What a sandbox proves about itself: a probe cell run inside, and the properties it shows.

Backends do not *assume* their isolation: ``rlmbox doctor`` and session creation under a
policy with ``isolation.require`` start a real sandbox, run :data:`PROBE_CELL` in it and
derive the properties from what the cell observed. Only facts measured inside count (the
process backend adds what the host measures of that same sandbox), only from a probe that
ran to the end: a failed or partial probe demonstrates nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from rlmbox.sandboxes.base import IsolationProperty as P
from rlmbox.sandboxes.base import ResourceLimits, Sandbox

PROBE_CELL = r'''
import json as _j, os as _o, resource as _r, socket as _s
_f = {"uid": _o.getuid(), "pid": _o.getpid()}
try:
    _st = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
    _f["cap_eff"] = _st.get("CapEff", "").strip()
    _f["no_new_privs"] = _st.get("NoNewPrivs", "").strip()
    _f["seccomp"] = _st.get("Seccomp", "").strip()
except OSError as _e:
    _f["status_error"] = str(_e)
try:
    _f["ifaces"] = sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").readlines()[2:])
except OSError as _e:
    _f["ifaces_error"] = str(_e)
try:
    _t = _s.socket(_s.AF_INET, _s.SOCK_STREAM); _t.close(); _f["inet_socket"] = True
except OSError:
    _f["inet_socket"] = False
_f["host_root_visible"] = any(_o.path.exists(p) for p in ("/root", "/home", "/etc/shadow"))
try:
    open("/usr/rlmbox-probe", "w"); _f["usr_writable"] = True
except OSError:
    _f["usr_writable"] = False
_f["pids_in_view"] = len([p for p in _o.listdir("/proc") if p.isdigit()])
_f["rlimit_as"] = _r.getrlimit(_r.RLIMIT_AS)[0]
_f["rlimit_cpu"] = _r.getrlimit(_r.RLIMIT_CPU)[0]
_f["writable_bytes"] = {}
for _d in dict.fromkeys(_o.path.realpath(p) for p in (
        "/tmp", "/dev/shm", "/dev", "/var/tmp", "/run", "/work", _o.getcwd(),
        _o.environ.get("HOME", "/tmp"), _o.environ.get("TMPDIR", "/tmp"))):
    _p = _o.path.join(_d, ".rlmbox-probe")
    try:
        open(_p, "w").close(); _o.unlink(_p)
    except OSError:
        continue
    _v = _o.statvfs(_d); _f["writable_bytes"][_d] = _v.f_blocks * _v.f_frsize
print("RLMBOX-PROBE " + _j.dumps(_f))
'''

# Every fact the cell records when it runs to the end: a probe missing one proves nothing.
REQUIRED_FACTS = frozenset({
    "uid", "cap_eff", "no_new_privs", "seccomp", "inet_socket", "host_root_visible",
    "usr_writable", "pids_in_view", "rlimit_as", "rlimit_cpu", "writable_bytes"})
# A sandbox's own pid namespace holds its init, the agent and little else; a host's
# namespace holds far more. (The process backend also compares namespaces from the host.)
MAX_PIDS_IN_OWN_NAMESPACE = 8


def parse_probe_output(stdout: str) -> dict[str, Any]:
    for line in stdout.splitlines():
        if line.startswith("RLMBOX-PROBE "):
            facts: dict[str, Any] = json.loads(line.removeprefix("RLMBOX-PROBE "))
            return facts
    return {}


def observed_properties(facts: dict[str, Any], limits: ResourceLimits) -> frozenset[P]:
    """Properties the probe facts demonstrate; none at all from a partial probe.

    ``limits`` are the ones the probed sandbox was started with (the disk size to compare).
    """
    if not facts.keys() >= REQUIRED_FACTS:
        return frozenset()
    props: set[P] = set()
    ifaces = facts.get("ifaces")
    if isinstance(ifaces, list) and set(ifaces) <= {"lo"}:
        props.add(P.NETWORK_NONE)   # a network namespace of its own, with no way out
    if facts["cap_eff"] == "0000000000000000":
        props.add(P.CAPS_DROPPED)
    if facts["no_new_privs"] == "1":
        props.add(P.NO_NEW_PRIVILEGES)
    if facts["seccomp"] == "2":
        props.add(P.SECCOMP)
    if facts["uid"] != 0:
        props.add(P.NON_ROOT)
    if facts["host_root_visible"] is False:
        props.add(P.FILESYSTEM_PRIVATE)
    if facts["usr_writable"] is False:
        props.add(P.READ_ONLY_ROOT)
    if facts["pids_in_view"] <= MAX_PIDS_IN_OWN_NAMESPACE:
        props.add(P.PID_NAMESPACE)
    if facts["rlimit_as"] >= 0:
        props.add(P.MEMORY_LIMIT)
    if facts["rlimit_cpu"] >= 0:
        props.add(P.CPU_LIMIT)
    sizes = facts["writable_bytes"]
    if sizes and all(size <= limits.disk_bytes for size in sizes.values()):
        props.add(P.DISK_LIMIT)
    return frozenset(props)


@dataclass
class ProbeRun:
    """What one probe of a started sandbox returned."""

    init: dict[str, Any] | None = None     # the init result frame (None: never answered)
    facts: dict[str, Any] = field(default_factory=dict)
    ok: bool = False                       # the probe cell ran to an ``ok`` result


def run_probe(sandbox: Sandbox, timeout: float) -> ProbeRun:
    """Initialises ``sandbox`` and runs :data:`PROBE_CELL` in it; the caller kills it.

    The backend confines its sandboxes itself (at start-up or by the engine), so ``init``
    carries no configuration: the probe sees exactly what a session would.
    """
    run = ProbeRun()
    sandbox.send({"t": "init", "id": "probe", "config": {}})
    sandbox.send({"t": "exec", "id": "probe-cell", "code": PROBE_CELL})
    out: list[str] = []
    while True:
        frame = sandbox.recv(timeout)
        if frame is None:
            return run
        if frame["t"] == "output" and frame["stream"] == "stdout":
            out.append(frame["data"])
        elif frame["t"] == "result" and frame["id"] == "probe":
            run.init = frame
        elif frame["t"] == "result" and frame["id"] == "probe-cell":
            run.facts = parse_probe_output("".join(out))
            run.ok = frame["status"] == "ok"
            return run
