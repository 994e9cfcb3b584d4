"""The agent's command line in the VM: the policy's rlimits first, then the agent.

An E2B VM's memory, CPU and disk are its template's, shared by everything in it; the
policy's per-sandbox limits still bind the agent and model code as rlimits (address
space, CPU seconds, open files, file size; or the VM's own where it is lower), set by a
few lines of Python that then ``exec`` the agent, as the process backend sets them
between fork and exec.
"""

from __future__ import annotations

import json

from rlmbox.sandboxes.base import ResourceLimits

_HEADROOM = 256 * 1024 * 1024   # the interpreter and agent themselves, as in the jail

# each limit is the policy's or the VM's own hard limit, whichever is lower (an
# unprivileged process cannot raise its hard limit)
SET_LIMITS_THEN_EXEC = (
    "import json,os,resource as r,sys\n"
    "for k,v in json.loads(sys.argv[1]).items():\n"
    "    n=getattr(r,k); h=r.getrlimit(n)[1]\n"
    "    v=v if h==r.RLIM_INFINITY else min(v,h); r.setrlimit(n,(v,v))\n"
    "os.execv(sys.executable,[sys.executable,'-I','-B',*sys.argv[2:]])\n")


def agent_argv(agent_path: str, limits: ResourceLimits, confine: dict[str, object]) -> list[str]:
    """``python3 -c <set limits, exec>`` with the limits, the agent and its confinement."""
    rlimits = {"RLIMIT_AS": limits.memory_bytes + _HEADROOM, "RLIMIT_CPU": limits.cpu_seconds,
               "RLIMIT_NOFILE": limits.open_files, "RLIMIT_FSIZE": limits.file_size_bytes,
               "RLIMIT_CORE": 0}
    return ["/usr/bin/env", "python3", "-I", "-B", "-c", SET_LIMITS_THEN_EXEC,
            json.dumps(rlimits, separators=(",", ":")), agent_path,
            "--confine=" + json.dumps(confine, separators=(",", ":"))]
