"""Limits explain themselves: a bad timeout is a ValueError, and a cell ended by a limit
names the setting and its value (issue 17, bug 5)."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from rlmbox.runtime.runtime import Runtime


@pytest.mark.parametrize("timeout", [-1, 0, math.nan, math.inf, True, "5"])
def test_a_timeout_that_is_not_a_positive_number_is_refused(
        runtime: Runtime, timeout: object) -> None:
    with runtime.session() as s, pytest.raises((ValueError, TypeError), match="timeout"):
        s.exec("x = 1", timeout=timeout)  # type: ignore[arg-type]


def test_a_timeout_over_the_policys_limit_is_refused_by_name(runtime: Runtime) -> None:
    limit = runtime.policy.limits.cell_timeout_s
    with runtime.session() as s, pytest.raises(ValueError, match="cell_timeout_s") as refused:
        s.exec("x = 1", timeout=limit + 100)
    assert "limits.cell_timeout_s" in str(refused.value)
    assert f"{limit:g} s" in str(refused.value)


def test_an_interrupted_cell_names_the_limit(make_runtime: Callable[..., Runtime]) -> None:
    rt = make_runtime(limits={"cell_timeout_s": 1})
    with rt.session() as s:
        r = s.exec("while True:\n    pass")
        assert r.status == "interrupted"
        assert "limits.cell_timeout_s" in (r.error or "")
        assert "1 s" in (r.error or "")
        r = s.exec("while True:\n    pass", timeout=0.5)
        assert r.status == "interrupted"
        assert "timeout of 0.5 s" in (r.error or "")


def test_running_out_of_memory_names_the_limit(make_runtime: Callable[..., Runtime]) -> None:
    rt = make_runtime(limits={"memory_mb": 128})
    with rt.session() as s:
        r = s.exec("blocks = []\nwhile True:\n    blocks.append(bytearray(16 << 20))")
    assert r.status in ("error", "killed")
    assert "limits.memory_mb = 128" in (r.error or "")
