"""A tool registered on a running session (``Session.add_tools``, which DSPy's protocol
needs) gets no more than one registered at the start: the policy decides each call by the
tool's name, a denied tool never runs on the host, and the addition is audited."""

from __future__ import annotations

from .harness import Runtimes, events, run_json

ONLY_DOUBLE = [{"id": "permit-double", "effect": "permit", "function": "tool.double"}]

CALL_BOTH = """
import json
seen = [double(21)]
try:
    seen.append(secret())
except PolicyDenied as exc:
    seen.append(type(exc).__name__)
print(json.dumps(seen))
"""


def test_a_tool_added_later_runs_only_if_the_policy_permits_it(runtimes: Runtimes) -> None:
    ran: list[str] = []

    def secret() -> str:
        ran.append("secret")
        return "host secret"

    rt = runtimes(rules=ONLY_DOUBLE)
    with rt.session() as session:
        assert run_json(session, "import json\nprint(json.dumps(1))") == 1
        session.add_tools({"double": lambda x: 2 * x, "secret": secret})
        assert run_json(session, CALL_BOTH) == [42, "PolicyDenied"]
    assert ran == []
    assert events(rt, "session.functions_added")[0]["functions"] == ["tool.double",
                                                                     "tool.secret"]
    assert len(events(rt, "host.call", function="tool.secret", outcome="denied")) == 1
