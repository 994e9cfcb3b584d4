"""A policy's package environment: built once on the host, bound read-only into sandboxes.

``environment: {packages: [...]}`` in a policy names pip requirements. ``rlmbox env build
POLICY`` installs them with the host's pip (``--only-binary=:all:``: no package's build
script runs on the host) into ``<cache>/envs/<recipe hash>/site-packages``, readable by the
sandbox uids and writable by none of them, and only then renames the directory into place,
so a half-built environment is never used. A sandbox gets the directory read-only and on
``sys.path``; it has no pip and no network, so nothing is installed at run time. A session
whose environment is not built is refused before any sandbox starts.

The recipe is the sorted requirements, the Python version (major.minor) and the platform:
the same recipe on the same Python gives the same directory. An unpinned requirement
resolves at build time; ``manifest.json`` records what was installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from rlmbox.errors import EnvironmentBuildFailed, EnvironmentNotBuilt
from rlmbox.policies.model import EnvironmentPolicy, Policy
from rlmbox.sandboxes.bundle import cache_root

MANIFEST = "manifest.json"
SITE_PACKAGES = "site-packages"
BUILD_TIMEOUT_S = 900.0
Log = Callable[[str], None]


def python_tag() -> str:
    """``major.minor`` of the Python that builds environments (the host's)."""
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def recipe(environment: EnvironmentPolicy) -> dict[str, Any]:
    return {"format": 1, "packages": sorted(environment.packages), "python": python_tag(),
            "platform": sysconfig.get_platform()}


def recipe_hash(environment: EnvironmentPolicy) -> str:
    text = json.dumps(recipe(environment), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def environment_dir(environment: EnvironmentPolicy) -> Path:
    return cache_root() / "envs" / recipe_hash(environment)


def is_built(environment: EnvironmentPolicy) -> bool:
    return (environment_dir(environment) / MANIFEST).is_file()


def built_environment(policy: Policy) -> Path | None:
    """The built directory of the policy's packages; None when it names none.

    Raises:
        EnvironmentNotBuilt: it names packages that were not built on this machine.
    """
    if not policy.environment.packages:
        return None
    target = environment_dir(policy.environment)
    if not (target / MANIFEST).is_file():
        raise EnvironmentNotBuilt(
            f"policy {policy.name!r} needs packages {', '.join(policy.environment.packages)} "
            f"that are not built here; run 'rlmbox env build POLICY' with this policy "
            f"(they go to {target})")
    return target


def build_environment(environment: EnvironmentPolicy, *, force: bool = False,
                      log: Log | None = None) -> Path:
    """Installs the packages (once per recipe); returns the environment's directory.

    Raises:
        EnvironmentBuildFailed: pip is missing or failed, or the recipe is empty.
    """
    say = log or (lambda line: print(line, file=sys.stderr))
    if not environment.packages:
        raise EnvironmentBuildFailed("the policy names no packages (environment.packages)")
    target = environment_dir(environment)
    if (target / MANIFEST).is_file() and not force:
        say(f"up to date: {target}")
        return target
    envs = target.parent
    envs.mkdir(parents=True, exist_ok=True)
    os.chmod(envs, 0o755)  # noqa: S103 - sandbox uids traverse it
    staging = Path(tempfile.mkdtemp(prefix=".build-", dir=envs))
    try:
        _pip_install(environment.packages, staging / SITE_PACKAGES, say)
        installed = sorted(f"{d.metadata['Name']}=={d.version}" for d in
                           metadata.distributions(path=[str(staging / SITE_PACKAGES)]))
        manifest = {**recipe(environment), "installed": installed}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        _read_only_for_others(staging)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    say(f"built {target}: {', '.join(installed)}")
    return target


def _pip_install(packages: tuple[str, ...], site: Path, say: Log) -> None:
    argv = [sys.executable, "-m", "pip", "install", "--target", str(site),
            "--only-binary=:all:", "--no-input", "--disable-pip-version-check",
            "--no-warn-script-location", "--", *packages]
    say("running: " + " ".join(argv))
    try:
        done = subprocess.run(argv, capture_output=True, text=True,
                              timeout=BUILD_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EnvironmentBuildFailed(f"pip could not run: {exc}") from exc
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise EnvironmentBuildFailed(f"pip install failed (exit {done.returncode}): {tail}")


def _read_only_for_others(root: Path) -> None:
    """Directories 0755, files 0644: a sandbox uid reads them, only the builder writes."""
    for path in (root, *root.rglob("*")):
        if path.is_symlink():
            continue
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
