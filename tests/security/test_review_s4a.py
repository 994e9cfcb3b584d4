"""Review s4a: attacks on what changed at the host-call seam and in the audit log this round
(the caller-thread sync, body staging, policy ``lm_calls``, tool results that cannot cross).

Each test here performed an attack that succeeded; each was a strict xfail until its fix.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rlmbox.audit import writer as writer_module
from rlmbox.audit.log import AuditLog
from rlmbox.audit.reader import iter_records
from rlmbox.audit.verify import verify_log
from rlmbox.errors import AuditWriteError
from rlmbox.lm.scripted import ScriptedLM
from rlmbox.runtime.runtime import Runtime

from .harness import events, policy_yaml

PERMIT_TOOLS = [{"id": "permit-tools", "effect": "permit", "function": "tool.*"}]


def _unwedge(log: AuditLog) -> None:
    """Fails a hung writer on purpose so every thread blocked on it returns."""
    writer = log._writer
    with writer._mutex:
        if writer.failure is None:
            writer.failure = OSError("review: unblocked a wedged writer")
        writer._durable.notify_all()
        writer._work.notify()


# --- the audit log --------------------------------------------------------------------------

def test_an_interrupted_sync_loses_no_record(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """``sync()`` commits on the caller's thread now; Ctrl-C (KeyboardInterrupt) arriving
    during that commit must not make a record vanish while later syncs say it is durable:
    either the log fails closed or every record reaches disk and the chain verifies."""
    directory = tmp_path / "audit"
    log = AuditLog(directory, flush_interval_s=60)   # the caller's sync does the commit
    real_write = writer_module.GroupCommitWriter._write
    interrupts = iter([True])

    def interrupted(self: writer_module.GroupCommitWriter, chunk: list[bytes]) -> None:
        if next(interrupts, False):
            raise KeyboardInterrupt
        real_write(self, chunk)

    monkeypatch.setattr(writer_module.GroupCommitWriter, "_write", interrupted)
    try:
        log.append("first", n=1)
        with pytest.raises(KeyboardInterrupt):
            log.sync()
        try:
            log.append("second", n=2)
            log.sync()
        except AuditWriteError:
            return   # failing closed keeps the promise
    finally:
        with contextlib.suppress(AuditWriteError):
            log.close()
    assert [r["event"] for r in iter_records(directory)] == ["first", "second"]
    assert verify_log(directory).ok


def _append_twin_bodies(log: AuditLog, body: bytes, records: int) -> None:
    try:
        for _ in range(records):
            log.append("cell.result", bodies={"stdout": body, "stderr": body})
            log.sync()
    except AuditWriteError:
        pass   # unwedged by the test


def test_a_record_with_two_identical_bodies_does_not_wedge_the_log(tmp_path: Path) -> None:
    """Twenty records each holding one 4 MiB text twice (stdout == stderr): every append and
    sync must return. Today the backpressure counter drifts by 4 MiB a record and the
    16th append waits forever for a writer with nothing to write."""
    log = AuditLog(tmp_path / "audit")
    worker = threading.Thread(target=_append_twin_bodies,
                              args=(log, b"o" * (4 << 20), 20), daemon=True)
    worker.start()
    worker.join(10)
    wedged = worker.is_alive()
    if wedged:
        _unwedge(log)
        worker.join(10)
    with contextlib.suppress(AuditWriteError):
        log.close()
    assert not wedged, "the audit log stopped taking records"


@pytest.fixture
def process_runtime(tmp_path: Path) -> Iterator[Any]:
    """A process-backend runtime maker (the seam under test is the host's, not a wall's)."""
    made: list[Runtime] = []

    def make(**policy: Any) -> Runtime:
        path = tmp_path / f"policy-{len(made)}.yaml"
        path.write_text(policy_yaml("process", **policy))
        rt = Runtime(policy=path, lm=ScriptedLM(default="lm-answer"),
                     audit_dir=tmp_path / f"audit-{len(made)}", pool_size=0)
        made.append(rt)
        return rt

    yield make
    for rt in made:
        audit = rt.audit
        if isinstance(audit, AuditLog):
            _unwedge(audit)   # a no-op unless a test left it wedged
        with contextlib.suppress(AuditWriteError):
            rt.close()


TWIN_OUTPUT = """
import sys
text = 'o' * (8 << 20)
sys.stdout.write(text)
sys.stderr.write(text)
"""


def test_sandbox_output_cannot_wedge_the_shared_audit_log(process_runtime: Any) -> None:
    """Model code writes one 8 MiB text to both streams, cell after cell. Each cell.result
    names the same body twice; the log (one per daemon, shared by every tenant) must keep
    taking records. Today the tenth cell never returns: every session on the log hangs."""
    rt = process_runtime(limits={"output_bytes": 8 << 20, "cell_timeout_s": 30})
    statuses: list[str] = []

    def cells() -> None:
        try:
            with rt.session() as session:
                for _ in range(10):
                    statuses.append(session.exec(TWIN_OUTPUT).status)
        except AuditWriteError:
            pass   # unwedged by the test

    worker = threading.Thread(target=cells, daemon=True)
    worker.start()
    worker.join(30)
    wedged = worker.is_alive()
    if wedged:
        audit = rt.audit
        assert isinstance(audit, AuditLog)
        _unwedge(audit)
        worker.join(30)
    assert not wedged, f"the audit log stopped taking records after {len(statuses)} cells"
    assert statuses == ["ok"] * 10


# --- the host-call seam ---------------------------------------------------------------------

CALL_AND_REPORT = """
import json
try:
    value = {call}
    print(json.dumps(["ok", value]))
except Exception as exc:
    print(json.dumps([type(exc).__name__, str(exc)]))
"""


def _report(rt: Runtime, tools: dict[str, Any], call: str) -> Any:
    with rt.session(tools=tools) as session:
        result = session.exec(CALL_AND_REPORT.format(call=call))
        assert result.status == "ok", result.error
        return json.loads(result.stdout.splitlines()[-1])


def test_a_tool_with_a_max_tokens_parameter_gets_its_own_arguments(process_runtime: Any) -> None:
    """``lm_calls`` binds LM functions only (the loader refuses tool names), yet the
    dispatcher treats any function with a ``max_tokens`` parameter as an LM call: the tool
    gets ``temperature`` and ``stop`` too and fails with TypeError on every call."""
    def summarize(text: str, max_tokens: int = 100) -> str:
        return text[:max_tokens]

    rt = process_runtime(rules=PERMIT_TOOLS)
    kind, value = _report(rt, {"summarize": summarize}, "summarize('hello world', max_tokens=5)")
    assert (kind, value) == ("ok", "hello")
    recorded = events(rt, "host.call", function="tool.summarize")
    assert [r["outcome"] for r in recorded] == ["ok"]


def test_a_tool_result_nested_too_deep_is_the_tools_error(process_runtime: Any) -> None:
    """A result the sandbox's decoder refuses (70 nested lists; the frame depth cap is 64)
    cannot cross: promise 42b says it is that call's ``HostCallError`` naming the tool,
    recorded as an error. It was encoded and sent, the agent raised ``FrameError``
    inside model code, and the host recorded the call as ok."""
    def deep() -> Any:
        value: Any = []
        for _ in range(70):
            value = [value]
        return value

    rt = process_runtime(rules=PERMIT_TOOLS)
    kind, message = _report(rt, {"deep": deep}, "deep() and 'received'")
    assert kind == "HostCallError"
    assert message.startswith("tool.deep returned a value that cannot cross")
    recorded = events(rt, "host.call", function="tool.deep")
    assert [r["outcome"] for r in recorded] == ["error"]
