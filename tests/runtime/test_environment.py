"""The package environment's recipe, cache key and CLI (``rlmbox env build|show``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rlmbox.errors import PolicyError
from rlmbox.policies.model import EnvironmentPolicy, policy_from_data
from rlmbox.runtime.environment import environment_dir, recipe_hash
from tests.security.package_env import SIX, built_six

RLMBOX = [sys.executable, "-m", "rlmbox.cli.main"]


def test_the_cache_key_is_the_recipe_not_its_order() -> None:
    one = EnvironmentPolicy(packages=("six==1.17.0", "idna"))
    same = EnvironmentPolicy(packages=("idna", "six==1.17.0"))
    other = EnvironmentPolicy(packages=("six==1.16.0", "idna"))
    assert recipe_hash(one) == recipe_hash(same)
    assert recipe_hash(one) != recipe_hash(other)
    assert environment_dir(one) != environment_dir(other)


@pytest.mark.parametrize("requirement", [
    "six @ file:///etc/passwd", "--index-url=http://evil/", "-e .", "../six",
    "six; python_version > '3'", "https://example.com/six.whl"])
def test_a_requirement_cannot_name_a_url_a_path_or_a_pip_option(requirement: str) -> None:
    with pytest.raises(PolicyError) as refused:
        policy_from_data({"environment": {"packages": [requirement]}})
    assert refused.value.errors[0].startswith("environment.packages[0]: ")


def test_env_build_then_show(tmp_path: Path) -> None:
    """``env build`` is a no-op once built (cached by recipe); ``env show`` names what is
    installed."""
    built_six()
    policy = tmp_path / "six.yaml"
    policy.write_text(json.dumps({"environment": {"packages": [SIX]}}))
    build = subprocess.run([*RLMBOX, "env", "build", str(policy)], capture_output=True,
                           text=True, timeout=300, check=False)
    assert build.returncode == 0, build.stderr
    assert "up to date" in build.stderr
    assert build.stdout.strip() == str(built_six())
    show = subprocess.run([*RLMBOX, "env", "show", str(policy), "--json"],
                          capture_output=True, text=True, timeout=60, check=False)
    report = json.loads(show.stdout)
    assert report["built"] is True
    assert report["installed"] == ["six==1.17.0"]


def test_env_show_of_an_unbuilt_recipe_exits_1(tmp_path: Path) -> None:
    policy = tmp_path / "unbuilt.yaml"
    policy.write_text(json.dumps({"environment": {"packages": ["rlmbox-never-built==0.0.0"]}}))
    show = subprocess.run([*RLMBOX, "env", "show", str(policy)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert show.returncode == 1
    assert "run rlmbox env build" in show.stdout
