"""What model code learns when a caller's tool fails (issue 17, bug 4): the exception's
type and the tool's name, never the tool's own message (host paths, internals), unless the
tool raises ``ToolError``, whose message is meant for model code. The host's record keeps
the whole text.
"""

from __future__ import annotations

from typing import Any

from rlmbox import ToolError

from .harness import Runtimes, events, run_json

PERMIT_TOOLS = [{"id": "permit-tools", "effect": "permit", "function": "tool.*"}]

CALL_AND_REPORT = """
import json
try:
    {call}
    print(json.dumps(["ok", ""]))
except Exception as exc:
    print(json.dumps([type(exc).__name__, str(exc)]))
"""


def _report(runtimes: Runtimes, tool: Any, call: str) -> tuple[list[str], Any]:
    rt = runtimes(rules=PERMIT_TOOLS)
    with rt.session(tools={"probe": tool}) as session:
        return run_json(session, CALL_AND_REPORT.format(call=call)), rt


def test_a_tools_own_exception_message_stays_on_the_host(runtimes: Runtimes) -> None:
    """A ValueError naming a host path reaches model code as ``HostCallError`` naming the
    tool and ``ValueError`` only; the audit record keeps the message."""
    def probe(key: str) -> str:
        raise ValueError(f"cannot open /srv/internal/tables/{key}.db")

    (kind, message), rt = _report(runtimes, probe, "probe('users')")
    assert kind == "HostCallError"
    assert message == "tool.probe failed: ValueError"
    recorded = events(rt, "host.call", function="tool.probe", outcome="error")
    assert len(recorded) == 1
    assert "/srv/internal/tables/users.db" in recorded[0]["error"]


def test_a_tool_error_message_reaches_model_code(runtimes: Runtimes) -> None:
    """A ``ToolError`` is the tool author's message for the model: it crosses whole."""
    def probe(key: str) -> str:
        raise ToolError(f"no city named {key}")

    (kind, message), _ = _report(runtimes, probe, "probe('Atlantis')")
    assert (kind, message) == ("HostCallError", "tool.probe failed: no city named Atlantis")


def test_argument_binding_errors_still_cross(runtimes: Runtimes) -> None:
    """rlmbox's own binding errors are about the call model code made: they cross."""
    def probe(key: str) -> str:
        return key

    (kind, message), _ = _report(runtimes, probe, "probe('a', nope=1)")
    assert kind == "TypeError"
    assert "unexpected argument 'nope'" in message


def test_a_tool_result_that_cannot_cross_is_the_tools_error(runtimes: Runtimes) -> None:
    """A tool returning NaN or an object is the host's fault, not the sandbox's: model code
    gets ``HostCallError`` naming the tool, the session lives on, the record says why."""
    results = iter([float("nan"), object()])

    def probe() -> Any:
        return next(results)

    rt = runtimes(rules=PERMIT_TOOLS)
    with rt.session(tools={"probe": probe}) as session:
        for _ in range(2):
            kind, message = run_json(session, CALL_AND_REPORT.format(call="probe()"))
            assert kind == "HostCallError"
            assert message.startswith("tool.probe returned a value that cannot cross")
        assert session.exec("print('alive')").stdout == "alive\n"
    recorded = events(rt, "host.call", function="tool.probe", outcome="error")
    assert len(recorded) == 2
    assert "JSON" in recorded[0]["error"]
    assert not events(rt, "sandbox.killed")


def test_a_tool_result_over_the_frame_cap_is_refused_not_fatal(runtimes: Runtimes) -> None:
    """A result larger than one frame is refused by size on the host; the session lives."""
    def probe() -> str:
        return "x" * (9 * 1024 * 1024)

    (kind, message), rt = _report(runtimes, probe, "probe()")
    assert kind == "HostCallError"
    assert "-byte cap of one reply" in message
    assert events(rt, "host.call", function="tool.probe", outcome="error")
