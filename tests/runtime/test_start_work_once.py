"""What a warm start no longer redoes: the sandbox spec of a policy without packages, and
the isolation check of properties that already met the policy. A package environment is
still checked at every start, and a backend's new properties are checked again."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from rlmbox.errors import EnvironmentNotBuilt, IsolationUnavailable
from rlmbox.runtime import environment
from rlmbox.runtime.runtime import Runtime
from rlmbox.sandboxes.base import IsolationProperty
from rlmbox.sandboxes.process.backend import ProcessSandbox
from tests.security.harness import audit_records


def test_sessions_of_a_runtime_without_packages_share_one_spec(
        make_runtime: Callable[..., Runtime]) -> None:
    rt = make_runtime()
    with rt.session() as first, rt.session() as second:
        assert isinstance(first.sandbox, ProcessSandbox)
        assert isinstance(second.sandbox, ProcessSandbox)
        assert first.sandbox.spec is second.sandbox.spec


def test_a_package_environment_removed_after_a_start_is_refused_at_the_next(
        make_runtime: Callable[..., Runtime], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The spec of a policy with packages is not kept: each start checks the environment."""
    monkeypatch.setattr(environment, "cache_root", lambda: tmp_path / "cache")
    rt = make_runtime(environment={"packages": ["six==1.17.0"]})
    built = environment.environment_dir(rt.policy.environment)
    built.mkdir(parents=True)
    (built / environment.MANIFEST).write_text("{}")
    assert rt.pool() is None   # made the spec once, with the environment built
    (built / environment.MANIFEST).unlink()
    with pytest.raises(EnvironmentNotBuilt, match="rlmbox env build"):
        rt.session()


def test_properties_a_new_probe_finds_lacking_are_refused_at_the_next_start(
        make_runtime: Callable[..., Runtime], monkeypatch: pytest.MonkeyPatch) -> None:
    """A start after one that passed checks again once the backend reports other
    properties (a new probe's report): the earlier pass does not carry over."""
    rt = make_runtime()
    rt.session().close()
    backend = rt.backend("process")
    weaker = backend.properties() - {IsolationProperty.NETWORK_NONE}
    monkeypatch.setattr(backend, "properties", lambda: weaker)
    with pytest.raises(IsolationUnavailable, match="network_none"):
        rt.session()
    refused = [r for r in audit_records(rt) if r.get("event") == "session.refused"]
    assert refused
    assert refused[-1]["missing"] == ["network_none"]


def test_each_start_record_names_the_properties_and_limits_in_force(
        make_runtime: Callable[..., Runtime], monkeypatch: pytest.MonkeyPatch) -> None:
    """session.create's property names and limits are made once, yet each record names
    what is in force: a backend's new report shows in the next record."""
    rt = make_runtime()
    rt.session().close()
    rt.session().close()
    backend = rt.backend("process")
    stronger = backend.properties() | {IsolationProperty.USER_SPACE_KERNEL}
    monkeypatch.setattr(backend, "properties", lambda: stronger)
    rt.session().close()
    creates = [r for r in audit_records(rt) if r.get("event") == "session.create"]
    assert len(creates) == 3
    assert creates[0]["properties"] == creates[1]["properties"]
    assert creates[2]["properties"] == sorted(str(p) for p in stronger)
    assert "user_space_kernel" not in creates[0]["properties"]
    assert all(r["limits"] == rt.policy.limits.model_dump() for r in creates)
