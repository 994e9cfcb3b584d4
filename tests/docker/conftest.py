"""Fixtures for the Docker backend tests: a real engine, real runc and runsc.

Outside CI a missing engine, runtime or image skips; with ``CI`` set it fails the run.
Every test's containers are removed, and the session ends by proving none are left.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rlmbox.errors import SandboxUnavailable
from rlmbox.sandboxes.base import ResourceLimits, SandboxSpec
from rlmbox.sandboxes.docker.backend import DockerBackend, DockerSandbox
from rlmbox.sandboxes.docker.engine import connect, runtimes
from rlmbox.sandboxes.docker.host_kill import REMOVALS
from rlmbox.sandboxes.images.build import find_image
from rlmbox.sandboxes.owner import LABEL_OWNER, Owner

HELPER = Path(__file__).parent / "helper_agent" / "agent.py"


def need(what: str) -> None:
    """Skips, or fails when CI is set: CI must never silently skip the container tests."""
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {what}")
    pytest.skip(what)


@pytest.fixture(scope="session")
def engine() -> Iterator[Any]:
    try:
        client = connect()
    except SandboxUnavailable as exc:
        need(str(exc))
    yield client
    REMOVALS.wait(60)   # containers closed by the tests, removed in the background
    try:
        leftovers = client.api.containers(
            all=True, filters={"label": f"{LABEL_OWNER}={Owner.current().id}"})
        for item in leftovers:
            client.api.remove_container(item["Id"], force=True)
    finally:
        client.close()
    assert leftovers == [], f"containers left behind: {[c['Names'] for c in leftovers]}"


@pytest.fixture(scope="session")
def image(engine: Any) -> str:
    tag = find_image(engine)
    if tag is None:
        need("the sandbox image is not built (bash scripts/provision.sh)")
    assert tag is not None
    return tag


@pytest.fixture(scope="session")
def agent_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A world-readable bundle holding the stand-in agent."""
    bundle = tmp_path_factory.mktemp("agent-bundle")
    shutil.copy(HELPER, bundle / "agent.py")
    os.chmod(bundle, 0o755)
    os.chmod(bundle / "agent.py", 0o644)
    return bundle


@pytest.fixture(params=["runc", pytest.param("runsc", marks=pytest.mark.gvisor)])
def runtime(request: pytest.FixtureRequest, engine: Any) -> str:
    name: str = request.param
    if name not in runtimes(engine):
        need(f"the engine has no {name} runtime (bash scripts/provision.sh)")
    return name


@pytest.fixture
def backend(runtime: str, engine: Any, image: str, agent_dir: Path,
            tmp_path: Path) -> DockerBackend:
    """The stand-in agent speaks on stdio only: these are the attach stream's tests (the
    socket transport's are in test_docker_socket.py, with the real agent)."""
    return DockerBackend(runtime, image=image, agent_dir=agent_dir, client=engine,
                         stage_root=tmp_path / "stage", transport="stdio")


SandboxFactory = Callable[..., DockerSandbox]


@pytest.fixture
def make_sandbox(backend: DockerBackend) -> Iterator[SandboxFactory]:
    made: list[DockerSandbox] = []

    def make(**limits: Any) -> DockerSandbox:
        spec = SandboxSpec(limits=ResourceLimits(**limits))
        sandbox = backend.create(spec)
        made.append(sandbox)
        return sandbox

    yield make
    for sandbox in made:
        sandbox.kill()


@pytest.fixture
def sandbox(make_sandbox: SandboxFactory) -> DockerSandbox:
    return make_sandbox()
