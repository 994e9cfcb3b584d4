"""What a cell's result frame reports is bounded on the host before anyone sees it.

Model code can forge its own cell's ``result`` frame (see test_protocol_attacks.py), with
an ``error`` or an ``answer`` of megabytes. Every string in it is cut to the policy's
``output_bytes`` before it reaches ``ExecResult`` or the audit log; the cut is reported in
``ExecResult.dropped`` and in the ``cell.result`` record; the answer is audited by digest.
"""

from __future__ import annotations

import hashlib
import json

from rlmbox.runtime.runtime import Runtime

from .harness import Runtimes, audit_records, events, watched_session
from .test_protocol_attacks import FORGE

HUGE = 3_000_000


def _cell_result(rt: Runtime, cell_id: str) -> dict[str, object]:
    [record] = events(rt, "cell.result", cell=cell_id)
    return record


def test_forged_huge_error_and_answer_are_capped(runtimes: Runtimes) -> None:
    """A forged result with a 3,000,000-character error and answer: both are cut to the
    output cap in ExecResult and in the audit record, and the cut is reported."""
    rt = runtimes()
    cap = rt.policy.limits.output_bytes
    with watched_session(rt) as (session, _):
        result = session.exec(
            FORGE + "cid = sys._getframe(1).f_locals['cell_id']\n"
            f"forge({{'t': 'result', 'id': cid, 'status': 'error', 'error': 'E' * {HUGE},"
            f" 'answer': 'A' * {HUGE}, 'has_answer': True}})\n"
            "import time\ntime.sleep(30)\n")
        assert result.status == "error"
        assert result.error is not None
        assert len(result.error.encode()) <= cap + 100
        assert result.error.startswith("E" * 1000)
        assert result.answer == "A" * cap
        assert result.truncated
        assert result.dropped["error"] == HUGE - cap
        assert result.dropped["answer"] == HUGE - cap
        record = _cell_result(rt, result.cell_id)
    assert isinstance(record["error"], str)
    assert len(record["error"].encode()) <= cap + 100
    assert record["truncated"] is True
    assert record["dropped"] == result.dropped
    # the answer is audited by digest, as the caller received it
    answer_json = json.dumps(result.answer, ensure_ascii=False, sort_keys=True).encode()
    assert record["answer_sha256"] == hashlib.sha256(answer_json).hexdigest()
    assert record["answer_bytes"] == len(answer_json)
    longest = max(len(json.dumps(r)) for r in audit_records(rt))
    assert longest < 2 * cap, f"an audit record of {longest} characters"


def test_forged_structured_answer_over_the_cap_is_cut_to_its_json(runtimes: Runtimes) -> None:
    """An answer that is not a string (a list of many strings) over the cap arrives as
    the first ``output_bytes`` of its JSON text, with the cut reported."""
    rt = runtimes()
    cap = rt.policy.limits.output_bytes
    with watched_session(rt) as (session, _):
        result = session.exec(
            FORGE + "cid = sys._getframe(1).f_locals['cell_id']\n"
            "forge({'t': 'result', 'id': cid, 'status': 'ok',"
            " 'answer': ['x' * 1000] * 1000, 'has_answer': True})\n"
            "import time\ntime.sleep(30)\n")
        assert result.status == "ok"
        assert isinstance(result.answer, str)
        assert len(result.answer.encode()) == cap
        assert result.answer.startswith('["' + "x" * 1000 + '", "')
        assert result.dropped["answer"] > 0
        assert result.truncated


def test_honest_answer_is_audited_by_digest_and_untouched(runtimes: Runtimes) -> None:
    """An answer under the cap reaches the caller as it was sent, and its digest is in
    the cell's audit record (the answer was never audited before)."""
    rt = runtimes()
    with watched_session(rt) as (session, _):
        result = session.exec("FINAL({'content': 'done', 'n': [1, 2]})")
        assert result.answer == {"content": "done", "n": [1, 2]}
        assert result.dropped == {"stdout": 0, "stderr": 0, "error": 0, "answer": 0}
        assert not result.truncated
        record = _cell_result(rt, result.cell_id)
    answer_json = json.dumps(result.answer, ensure_ascii=False, sort_keys=True).encode()
    assert record["answer_sha256"] == hashlib.sha256(answer_json).hexdigest()
    assert record["has_answer"] is True
