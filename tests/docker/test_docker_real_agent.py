"""The package's own agent bundle starts in both runtimes and the probe proves the claims."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rlmbox.sandboxes.base import IsolationProperty as P
from rlmbox.sandboxes.docker.backend import DockerBackend

pytestmark = pytest.mark.docker


def test_probe_with_the_real_agent(runtime: str, engine: Any, image: str,
                                   tmp_path: Path) -> None:
    backend = DockerBackend(runtime, image=image, client=engine, stage_root=tmp_path)
    report = backend.probe()
    assert report.available, report.detail
    must = {P.NETWORK_NONE, P.CAPS_DROPPED, P.NON_ROOT, P.FILESYSTEM_PRIVATE,
            P.READ_ONLY_ROOT, P.NO_NEW_PRIVILEGES, P.MEMORY_LIMIT, P.PIDS_LIMIT}
    assert (P.SECCOMP in report.properties) is (runtime == "runc")
    assert must <= report.properties
    assert (P.USER_SPACE_KERNEL in report.properties) is (runtime == "runsc")
    assert backend.properties() == report.properties
