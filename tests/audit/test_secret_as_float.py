"""A registered secret is redacted from a float as the log writes the float: the pre-check
reads the canonical spelling (``1e-05``), not orjson's (``0.00001``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlmbox.audit.log import AuditLog
from rlmbox.audit.redact import REDACTED, Redactor


@pytest.mark.parametrize("value", [1e-05, 2.5e-07, -3e-05])
def test_a_secret_spelled_as_the_log_writes_a_small_float_is_in_no_file(
        tmp_path: Path, value: float) -> None:
    secret = repr(value)
    log = AuditLog(tmp_path / "audit", secrets=[secret])
    record = log.append("x.float", v=value, nested={"v": [value]})
    log.close()
    assert record["v"] == REDACTED
    assert record["nested"] == {"v": [REDACTED]}
    written = b"".join(p.read_bytes() for p in (tmp_path / "audit").rglob("*") if p.is_file())
    assert secret.encode() not in written


def test_the_pre_check_sees_a_small_float_as_it_is_written() -> None:
    assert Redactor(["1e-05"]).needs({"v": 1e-05})
