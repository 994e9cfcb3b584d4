"""What a sandbox proves about itself: a probe cell run inside, and the properties it shows.

Backends do not *assume* their isolation: ``rlmbox doctor`` and session creation under a
policy with ``isolation.require`` start a real sandbox, run :data:`PROBE_CELL` in it and
derive the properties from what the cell observed. Only facts measured inside count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from rlmbox.sandboxes.base import IsolationProperty as P
from rlmbox.sandboxes.base import Sandbox

PROBE_CELL = r'''
import json as _j, os as _o, socket as _s
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
except OSError:
    _f["ifaces"] = []
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
print("RLMBOX-PROBE " + _j.dumps(_f))
'''


def parse_probe_output(stdout: str) -> dict[str, Any]:
    for line in stdout.splitlines():
        if line.startswith("RLMBOX-PROBE "):
            facts: dict[str, Any] = json.loads(line.removeprefix("RLMBOX-PROBE "))
            return facts
    return {}


def observed_properties(facts: dict[str, Any]) -> frozenset[P]:
    """Properties the probe facts demonstrate (limits are proven by the backend's setup)."""
    props: set[P] = set()
    ifaces = set(facts.get("ifaces", []))
    if not facts.get("inet_socket", True) or ifaces <= {"lo"}:
        props.add(P.NETWORK_NONE)
    if facts.get("cap_eff") == "0000000000000000":
        props.add(P.CAPS_DROPPED)
    if facts.get("no_new_privs") == "1":
        props.add(P.NO_NEW_PRIVILEGES)
    if facts.get("seccomp") == "2":
        props.add(P.SECCOMP)
    if facts.get("uid", 0) != 0:
        props.add(P.NON_ROOT)
    if not facts.get("host_root_visible", True):
        props.add(P.FILESYSTEM_PRIVATE)
    if facts.get("usr_writable") is False:
        props.add(P.READ_ONLY_ROOT)
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
