"""The package environment the tests use: ``six``, tiny and pure Python, built once per
machine into rlmbox's cache (later runs find it by its recipe hash and skip pip)."""

from __future__ import annotations

from pathlib import Path

from rlmbox.policies.model import EnvironmentPolicy
from rlmbox.runtime.environment import build_environment

SIX = "six==1.17.0"
SIX_ENVIRONMENT = EnvironmentPolicy(packages=(SIX,))


def built_six() -> Path:
    """The built environment of ``six`` (pip runs only the first time on a machine)."""
    return build_environment(SIX_ENVIRONMENT, log=lambda line: None)
