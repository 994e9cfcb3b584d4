"""``rlmbox doctor`` on the e2b backend (against the double): what the probe in the VM
measured, and what is provider-attested, shown apart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from e2b_double import E2BDouble


def test_doctor_shows_measured_and_provider_attested_properties(double: E2BDouble) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = subprocess.run([sys.executable, "-m", "rlmbox.cli.main", "doctor", "--json"],
                         capture_output=True, text=True, env=env, check=True, timeout=300)
    e2b = next(b for b in json.loads(out.stdout)["backends"] if b["name"] == "e2b")
    assert e2b["available"], e2b["detail"]
    attested = set(e2b["provider_attested"])
    assert {"hardware_virtualization", "network_none", "tree_kill"} <= attested
    measured = set(e2b["properties"]) - attested
    assert {"non_root", "caps_dropped", "seccomp"} <= measured
    assert "user_space_kernel" not in e2b["properties"]
