"""The fuzz target's seed corpus replays cleanly: a report for every input, never an exception."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "fuzz" / "corpus" / "audit_verify"


def _target() -> ModuleType:
    pytest.importorskip("atheris")
    spec = importlib.util.spec_from_file_location("fuzz_audit_verify",
                                                  ROOT / "fuzz" / "fuzz_audit_verify.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("seed", sorted(p.name for p in CORPUS.iterdir()))
def test_seed_replays_without_raising(seed: str) -> None:
    _target().TestOneInput((CORPUS / seed).read_bytes())


def test_the_intact_seed_verifies_and_the_tampered_ones_do_not() -> None:
    module = _target()
    from rlmbox.audit.checkpoint import HmacKey
    from rlmbox.audit.verify import verify_bytes

    def verdict(name: str) -> tuple[bool, str]:
        log, _, cps = (CORPUS / name).read_bytes().partition(module.SEPARATOR)
        report = verify_bytes(log, cps, checker=HmacKey(module.FUZZ_KEY))
        return report.ok, report.kind

    assert verdict("intact") == (True, "")
    assert verdict("torn") == (True, "")
    assert verdict("deleted") == (False, "deleted")
    assert verdict("reordered") == (False, "reordered")
    assert verdict("truncated") == (False, "truncated")
    assert verdict("edited") == (False, "edited")
    assert verdict("bad_sig") == (False, "malformed")


@pytest.mark.parametrize("data", [b"[" * 100_000, b'{"seq":' + b"9" * 5000 + b"}\n",
                                  b'{"a":"\\ud800"}\n', b"\n" * 1000,
                                  b'{"seq":1}\n--checkpoints--\n{"v":1}\n'])
def test_hostile_inputs_give_a_report(data: bytes) -> None:
    _target().TestOneInput(data)
