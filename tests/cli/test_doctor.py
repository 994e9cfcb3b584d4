"""``rlmbox doctor`` says what each property means and how to get a missing one."""

from __future__ import annotations

import json
import subprocess
import sys

from rlmbox.sandboxes.base import PROPERTY_MEANINGS, IsolationProperty

RLMBOX = [sys.executable, "-m", "rlmbox.cli.main"]


def test_every_property_has_a_meaning() -> None:
    assert set(PROPERTY_MEANINGS) == set(IsolationProperty)


def test_doctor_explains_properties_and_names_a_remedy() -> None:
    plain = subprocess.run([*RLMBOX, "doctor"], capture_output=True, text=True,
                           timeout=180, check=True).stdout
    assert PROPERTY_MEANINGS[IsolationProperty.NETWORK_NONE] in plain
    report = json.loads(subprocess.run([*RLMBOX, "doctor", "--json"], capture_output=True,
                                       text=True, timeout=180, check=True).stdout)
    assert report["meanings"]["user_space_kernel"] == \
        PROPERTY_MEANINGS[IsolationProperty.USER_SPACE_KERNEL]
    process = next(b for b in report["backends"] if b["name"] == "process")
    assert "user_space_kernel" not in process["properties"]
    assert "runsc" in process["remedy"]   # the process backend cannot serve it: say where
    assert f"to get the missing ones: {process['remedy']}" in plain
