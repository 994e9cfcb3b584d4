"""Packages from the policy's environment: importable, read-only, never installed at run
time, and a session whose environment is not built is refused naming the command."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlmbox.errors import EnvironmentNotBuilt
from rlmbox.runtime import environment

from .harness import Runtimes, audit_records, skip_on_e2b
from .package_env import SIX, built_six

ENVIRONMENT = {"environment": {"packages": [SIX]}}


def test_a_built_package_imports_in_the_sandbox(runtimes: Runtimes) -> None:
    """The policy's package is on the sandbox's sys.path, from the read-only directory."""
    skip_on_e2b(runtimes.backend, "package environments are bound from the host's disk; "
                "E2B refuses them (test_e2b_refuses_a_package_environment)")
    built_six()
    rt = runtimes(**ENVIRONMENT)
    with rt.session() as s:
        r = s.exec("import six; print(six.__version__, six.__file__)")
    assert r.status == "ok", r.error
    version, path = r.stdout.split()
    assert version == "1.17.0"
    assert "/rlmbox/env/" in path or path.startswith(str(built_six()))


def test_the_environment_cannot_be_written(runtimes: Runtimes) -> None:
    """Model code cannot modify or add a module in the environment (it is bound read-only):
    a poisoned module would otherwise persist into every later session of the recipe."""
    skip_on_e2b(runtimes.backend, "package environments are bound from the host's disk; "
                "E2B refuses them (test_e2b_refuses_a_package_environment)")
    built_six()
    rt = runtimes(**ENVIRONMENT)
    with rt.session() as s:
        r = s.exec(
            "import os, six\n"
            "site = os.path.dirname(six.__file__)\n"
            "outcomes = []\n"
            "for attempt in (lambda: open(six.__file__, 'a'),\n"
            "                lambda: open(os.path.join(site, 'evil.py'), 'w'),\n"
            "                lambda: os.unlink(six.__file__)):\n"
            "    try:\n"
            "        attempt()\n"
            "        outcomes.append('WROTE')\n"
            "    except OSError as exc:\n"
            "        outcomes.append(type(exc).__name__)\n"
            "print(outcomes)\n")
    assert r.status == "ok", r.error
    assert "WROTE" not in r.stdout, r.stdout
    assert not (built_six() / "site-packages" / "evil.py").exists()


def test_the_sandbox_cannot_install_a_package(runtimes: Runtimes) -> None:
    """pip inside the sandbox (if the interpreter has one) cannot fetch anything: the
    package stays unimportable."""
    rt = runtimes(limits={"cell_timeout_s": 30})
    with rt.session() as s:
        r = s.exec(
            "import subprocess, sys\n"
            "done = subprocess.run([sys.executable, '-m', 'pip', 'install', '--user',\n"
            "                       '--timeout', '3', '--retries', '0', 'idna'],\n"
            "                      capture_output=True, timeout=25)\n"
            "try:\n"
            "    import idna\n"
            "    print('INSTALLED', idna.__file__)\n"
            "except ImportError:\n"
            "    print('absent')\n")
    assert r.status == "ok", r.error
    assert r.stdout.strip() == "absent"


def test_an_unbuilt_environment_is_refused_naming_the_command(
        runtimes: Runtimes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No sandbox starts, and the error says how to build it."""
    monkeypatch.setattr(environment, "cache_root", lambda: tmp_path / "empty-cache")
    rt = runtimes(**ENVIRONMENT)
    with pytest.raises(EnvironmentNotBuilt, match="rlmbox env build"):
        rt.session()
    assert not any(r.get("event") == "session.create" for r in audit_records(rt))
