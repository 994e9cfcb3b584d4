"""Limits explain themselves: a bad timeout is a ValueError, and a cell ended by a limit
names the setting and its value (issue 17, bug 5)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rlmbox.errors import PolicyError
from rlmbox.policies.model import load_policy_text
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


def test_an_output_flood_ends_the_cell_long_before_its_wall_time(
        make_runtime: Callable[..., Runtime]) -> None:
    """Issue 17 bug 6: a cell printing forever is stopped once its output passes
    limits.output_stop_bytes (default 16 x output_bytes), not after the whole cell limit."""
    rt = make_runtime(limits={"cell_timeout_s": 60, "output_bytes": 4096})
    with rt.session() as s:
        started = time.monotonic()
        r = s.exec("while True:\n    print('x' * 1000)")
        elapsed = time.monotonic() - started
        assert r.status == "interrupted", r.error
        assert "limits.output_stop_bytes" in (r.error or "")
        assert str(16 * 4096) in (r.error or "")
        assert elapsed < 30
        assert s.exec("print('still here')").stdout == "still here\n"


def test_output_stop_bytes_below_output_bytes_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as refused:
        load_policy_text("limits: {output_bytes: 4096, output_stop_bytes: 100}\n")
    assert any("output_stop_bytes (100) must be at least output_bytes (4096)" in e
               for e in refused.value.errors), refused.value.errors
