"""Atheris target: the daemon's request-body validation, fed hostile bytes as a remote
client could send them.

Input layout: the first byte picks the request model (even: create session, odd: exec),
the rest is the body. Invariants, for every input:

- ``parse_body`` returns a model or raises ``DaemonError`` with status 400, nothing else
  (anything else would be a 500 from the daemon);
- a returned model survives ``model_dump_json`` -> ``parse_body`` unchanged, and an exec
  request's timeout is finite and positive.

Run: ``fuzz/run.sh 60 daemon_request`` or
``python fuzz/fuzz_daemon_request.py fuzz/corpus/daemon_request``.
Replayed by tests/security/test_fuzz_regressions.py.
"""

from __future__ import annotations

import math
import sys

from rlmbox.daemon.models import CreateSessionRequest, ExecRequest
from rlmbox.daemon.validation import parse_body
from rlmbox.errors import DaemonError


def TestOneInput(data: bytes) -> None:  # the name atheris and libFuzzer use
    if not data:
        return
    model = ExecRequest if data[0] % 2 else CreateSessionRequest
    try:
        parsed = parse_body(model, data[1:])
    except DaemonError as exc:
        refusal: DaemonError | None = exc
    else:
        refusal = None
    if refusal is not None:
        assert refusal.status == 400, refusal.status
        assert str(refusal)
        return
    again = parse_body(model, parsed.model_dump_json().encode())
    assert again == parsed, (parsed, again)
    if isinstance(parsed, ExecRequest) and parsed.timeout_s is not None:
        assert math.isfinite(parsed.timeout_s)
        assert parsed.timeout_s > 0


def main() -> None:
    import atheris  # noqa: PLC0415 - only when fuzzing, not when replayed by tests

    atheris.instrument_all()
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
