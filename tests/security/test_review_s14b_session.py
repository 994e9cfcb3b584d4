"""Review s14b: sandbox text with a registered secret, end to end through a session (forged
call names, a cell error). Found while writing it: every record carrying the sandbox's text
has bodies, so it takes the full chain; only policy.load, session.create and session.ready
(host-made) took the line screen (6793dc4) here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlmbox.audit.verify import verify_log

from .harness import Runtimes, audit_records, watched_session
from .test_review_seam import FORGE_CALL

SECRET = "host-s3cret-\u2028-\u00e9-q"   # noqa: S105 - a test value
SPELLINGS = {
    "raw": SECRET,
    "in-a-longer-name": "fn_" + SECRET + "_tail",
    "sk-shaped": "sk-" + "Ab1" * 8,
}


def _all_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file())


@pytest.mark.parametrize("backend", ["process"], indirect=True)
def test_a_registered_secret_in_sandbox_text_is_in_no_file(runtimes: Runtimes) -> None:
    rt = runtimes()
    rt.audit.add_secret(SECRET)
    names = list(SPELLINGS.values())
    with watched_session(rt) as (session, _):
        code = FORGE_CALL + "".join(
            f"forge_call({900 + i}, {name!r})\n" for i, name in enumerate(names))
        code += f"raise RuntimeError({SECRET!r})\n"
        result = session.exec(code)
        assert result.status == "error"
        records = audit_records(rt)
        assert rt.audit_path is not None
        directory = rt.audit_path.parent
    data = _all_bytes(directory)
    assert SECRET.encode() not in data
    assert json.dumps(SECRET)[1:-1].encode() not in data
    assert SPELLINGS["sk-shaped"].encode() not in data
    assert verify_log(directory).ok
    forged = [r for r in records if r.get("event") == "host.call"
              and r.get("call_id") in range(900, 900 + len(names))]
    assert len(forged) == len(names)
