"""The client and the CLI load without the daemon's server stack (aiohttp is an extra)."""

from __future__ import annotations

import subprocess
import sys

from .daemon_process import REPO


def test_client_and_cli_do_not_import_aiohttp() -> None:
    code = ("import sys\nimport rlmbox.daemon.client, rlmbox.cli.main\n"
            "rlmbox.cli.main.build_parser()\n"
            "assert 'aiohttp' not in sys.modules, 'aiohttp imported'\n"
            "assert 'rlmbox.daemon.app' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=120, check=False,
                            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
