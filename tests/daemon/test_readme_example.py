"""The README's daemon example runs as printed against a live daemon."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from rlmbox import load_policy

from .conftest import RunningDaemon

README = Path(__file__).resolve().parents[2] / "README.md"


def _daemon_example() -> str:
    section = README.read_text().split("## Daemon", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README's daemon section has no python example"
    return match.group(1)


def test_readme_daemon_example_runs(start_daemon: Callable[..., RunningDaemon],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    running = start_daemon(policies={"default": load_policy("default"),
                                     "strict": load_policy("strict")})
    code = _daemon_example().replace('"/run/rlmbox/rlmbox.sock"', repr(str(running.socket)))
    namespace = {"token": running.token("alice"), "big_text": "x" * 12_345}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    assert capsys.readouterr().out == "ok 12345\n\n"
    with running.client("alice") as client:
        [record] = client.sessions()
    assert record["policy"] == "strict"
    assert record["state"] == "closed"
