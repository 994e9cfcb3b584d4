"""The ``isolation.e2b`` section: validated with located errors; no place for credentials."""

from __future__ import annotations

import re

import pytest

from rlmbox.errors import PolicyError
from rlmbox.policies.model import load_policy_text

BASE = "version: 1\nname: t\nisolation:\n  backend: e2b\n  e2b:\n"


def _errors(e2b_lines: str, backend: str = "e2b") -> str:
    """The loader's located errors for a policy with these ``e2b`` lines, as one text."""
    with pytest.raises(PolicyError) as info:
        load_policy_text(BASE.replace("backend: e2b", f"backend: {backend}") + e2b_lines)
    return "\n".join(info.value.errors)


def test_a_full_section_loads() -> None:
    policy = load_policy_text(BASE + "    template: my-tpl\n    timeout_s: 900\n    cpu: 4\n"
                              "    memory_mb: 2048\n    metadata: {team: ml}\n"
                              "    internet: false\n")
    e2b = policy.isolation.e2b_settings
    assert (e2b.template, e2b.timeout_s, e2b.cpu, e2b.memory_mb) == ("my-tpl", 900, 4, 2048)
    assert e2b.metadata == {"team": "ml"}
    assert e2b.internet is False


@pytest.mark.parametrize("field", ["api_key: e2b_123", "domain: evil.example",
                                   "api_url: http://x"])
def test_credentials_and_endpoints_have_no_place_in_a_policy(field: str) -> None:
    """The key and domain come from the host's environment only: the loader refuses them."""
    found = _errors(f"    {field}\n")
    assert re.search(r"isolation\.e2b: unknown field '(api_key|domain|api_url)'", found)


@pytest.mark.parametrize(("lines", "message"), [
    ("    timeout_s: 90000\n", r"isolation\.e2b\.timeout_s"),
    ("    cpu: 0\n", r"isolation\.e2b\.cpu"),
    ("    template: 'Bad Name!'\n", r"isolation\.e2b\.template"),
    ("    metadata: {org.rlmbox.owner: me}\n", "rlmbox's own tags"),
    ("    internet: 'yes'\n", r"isolation\.e2b\.internet"),
])
def test_bad_settings_are_refused_with_their_path(lines: str, message: str) -> None:
    assert re.search(message, _errors(lines))


def test_an_e2b_section_needs_the_e2b_backend() -> None:
    assert "needs backend 'e2b'" in _errors("    template: rlmbox\n", backend="process")
