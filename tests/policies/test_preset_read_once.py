"""A shipped preset is read once per process (an rlms environment per completion names
it each time); a policy file is read at every load, so an edit to it is seen."""

from __future__ import annotations

from pathlib import Path

from rlmbox.policies.model import load_policy, policy_source, preset_text


def test_a_shipped_preset_is_read_once() -> None:
    assert preset_text("default") is preset_text("default")


def test_a_policy_file_edited_between_loads_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_bytes(preset_text("default"))
    first = load_policy(path)
    path.write_bytes(preset_text("strict"))
    assert policy_source(path)[0] == preset_text("strict")
    assert load_policy(path).sha256 != first.sha256
