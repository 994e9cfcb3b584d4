"""A node actor's sandbox reaper kills the dead actor's E2B sandboxes by their owner tag,
and no one else's: the reaper of ``rlmbox/cluster/sandbox_reaper.py``, its actor played
by a process that starts it and is then SIGKILLed (no Ray needed)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from e2b_code_interpreter import Sandbox
from e2b_double import E2BDouble
from sandbox_reapers import reaper_pids

from rlmbox.sandboxes.owner import Owner, host_id

REPO = Path(__file__).resolve().parents[2]
REAP_WITHIN_S = 10.0
# the stand-in for a node actor: the reaper's module only (importing rlmbox.cluster itself
# would import Ray)
ACTOR = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("sandbox_reaper", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
reaper = module.SandboxReaper(sys.argv[2])
print("ready", flush=True)
time.sleep(600)
"""


def tagged_vm(double: E2BDouble, owner: Owner, name: str) -> str:
    sandbox = Sandbox.create(template="rlmbox", metadata=owner.labels(name), timeout=60,
                             api_key=double.api_key, api_url=double.url,
                             sandbox_url=double.url)
    return str(sandbox.sandbox_id)


def test_a_dead_actors_e2b_sandboxes_are_killed_and_no_one_elses(double: E2BDouble) -> None:
    actor, other = Owner(host_id(), 4_000_001, "actor"), Owner(host_id(), 4_000_002, "other")
    mine = tagged_vm(double, actor, "rlmbox-mine")
    theirs = tagged_vm(double, other, "rlmbox-theirs")
    stand_in = subprocess.Popen(
        [sys.executable, "-c", ACTOR, str(REPO / "rlmbox/cluster/sandbox_reaper.py"),
         actor.id], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert stand_in.stdout is not None
        assert stand_in.stdout.readline().strip() == "ready"
        assert reaper_pids(actor.id), "no reaper runs for the actor"
        time.sleep(0.5)
        assert mine in double.sandboxes, "the reaper killed before its actor died"
    finally:
        stand_in.kill()
        stand_in.wait()
        if stand_in.stdout is not None:
            stand_in.stdout.close()
    killed_at = time.monotonic()
    while (mine in double.sandboxes or reaper_pids(actor.id)) and \
            time.monotonic() - killed_at < REAP_WITHIN_S:
        time.sleep(0.1)
    try:
        assert mine not in double.sandboxes, "the dead actor's sandbox was not killed"
        assert theirs in double.sandboxes, "another owner's sandbox was killed"
        assert not reaper_pids(actor.id), "the reaper outlived its job"
    finally:
        double.kill(theirs)
        double.kill(mine)

