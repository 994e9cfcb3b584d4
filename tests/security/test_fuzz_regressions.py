"""Replays every seed and every saved crash through its fuzz target's one-input function.

Convention: ``fuzz/fuzz_<name>.py`` defines ``TestOneInput(data: bytes)``; its seeds live in
``fuzz/corpus/<name>/`` and the crashes ``fuzz/run.sh`` found in ``fuzz/crashes/<name>/``.
A crash stays here as a regression case once fixed. A crash that is still open is listed
in ``OPEN`` with the bug it shows, and runs as a strict xfail (so the fix flips it).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"

# Crash files whose bug is still open: "folder/file" -> the bug. Empty: all fixed.
OPEN: dict[str, str] = {}


def _targets() -> dict[str, Path]:
    return {p.stem.removeprefix("fuzz_"): p for p in sorted(FUZZ.glob("fuzz_*.py"))}


@cache
def one_input(name: str) -> Callable[[bytes], Any]:
    """The target's one-input function, imported from its file (without atheris running)."""
    path = _targets()[name]
    spec = importlib.util.spec_from_file_location(f"rlmbox_fuzz_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fn = getattr(module, "TestOneInput", None) or getattr(module, "test_one_input", None)
    assert callable(fn), f"{path.name} defines no TestOneInput(data: bytes)"
    return fn  # type: ignore[no-any-return]


def _cases() -> list[Any]:
    cases = []
    for kind in ("corpus", "crashes"):
        for folder in sorted((FUZZ / kind).glob("*/")):
            for item in sorted(folder.iterdir()):
                if not item.is_file() or item.name.startswith("."):
                    continue
                key = f"{kind}/{folder.name}/{item.name}"
                marks = [pytest.mark.xfail(strict=True, reason=OPEN[key])] if key in OPEN else []
                cases.append(pytest.param(folder.name, item, id=key, marks=marks))
    return cases


@pytest.mark.parametrize(("target", "path"), _cases())
def test_replay(target: str, path: Path) -> None:
    """The input runs through its target without an unexpected exception."""
    assert target in _targets(), f"{path} has no target fuzz/fuzz_{target}.py"
    one_input(target)(path.read_bytes())


@pytest.mark.parametrize("name", sorted(_targets()))
def test_every_target_has_a_seed_corpus(name: str) -> None:
    """Fuzzing starts from committed seeds, so a short CI pass still reaches deep."""
    seeds = FUZZ / "corpus" / name
    assert seeds.is_dir(), f"fuzz/fuzz_{name}.py has no seed corpus in fuzz/corpus/{name}/"
    assert any(p.is_file() for p in seeds.iterdir())


def test_open_crashes_exist() -> None:
    """Every entry of OPEN names a committed input (a stale entry hides nothing)."""
    for key in OPEN:
        assert (FUZZ / key).is_file(), key
