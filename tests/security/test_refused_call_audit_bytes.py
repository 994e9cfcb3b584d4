"""A cell cannot grow the audit log without bound through calls no budget counts: refused
calls (denied, invalid, over budget) record the sandbox's arguments, and past
``MAX_REFUSED_AUDIT_BYTES_PER_CELL`` of them the sandbox is killed."""

from __future__ import annotations

from rlmbox.runtime.session import MAX_REFUSED_AUDIT_BYTES_PER_CELL

from .harness import Runtimes, events

FLOOD_DENIED_CALLS = """
for i in range(40):
    try:
        rlm_query('Z' * 200_000 + str(i))
    except Exception:
        pass
print('survived')
"""


def test_a_flood_of_denied_calls_kills_the_cell(runtimes: Runtimes) -> None:
    """40 denied calls with 200 kB prompts (8 MB of arguments): the cell is killed once
    its refused calls wrote more than the cap, so the log holds at most the cap plus one
    call's arguments."""
    rt = runtimes()   # permits llm_query only: rlm_query is denied by default
    with rt.session() as session:
        result = session.exec(FLOOD_DENIED_CALLS)
    assert result.status == "killed", result
    assert "refused host calls wrote" in (result.error or "")
    denied = events(rt, "host.call", function="rlm_query", outcome="denied")
    written = sum(record["args_bytes"] for record in denied)
    assert written <= MAX_REFUSED_AUDIT_BYTES_PER_CELL + 200_100, written
    assert len(denied) < 40
