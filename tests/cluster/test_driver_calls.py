"""Host functions whose body runs on the driver: a session's tools, an LM provider kept on
the driver, streamed output, tools added to a running session, file transfers. The node
decides, meters and records each call in its own log; only the body runs on the driver."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rlmbox.audit.collected import node_log_name
from rlmbox.audit.reader import iter_records
from rlmbox.cluster import RemoteSessionState
from rlmbox.errors import SessionKilled
from rlmbox.lm.base import Completion, LMRequest, TextSink
from rlmbox.lm.scripted import ScriptedLM
from tests.conftest import write_policy

Make = Callable[..., Any]


def node_records(rt: Any, session: Any) -> list[dict[str, Any]]:
    return list(iter_records(rt.audit_dir / node_log_name(session.node_id)))


def tool_calls(records: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [r for r in records if r["event"] == "host.call" and r.get("function") == name]


def test_a_tool_runs_on_the_driver_and_is_decided_and_recorded_on_the_node(
        make_ray_runtime: Make) -> None:
    """A closure over driver state works as with an embedded runtime: the state it changes
    is the driver's, and the decision and the call are in the node's log."""
    seen: list[str] = []
    driver_thread = threading.get_ident()

    def remember(text: str) -> int:
        seen.append(text)
        assert threading.get_ident() != driver_thread   # its own thread, not the stream's
        return len(seen)

    rt = make_ray_runtime()
    with rt.session(tools={"remember": remember}) as s:
        result = s.exec("print(remember('a'), remember('b'))")
    assert result.stdout == "1 2\n", result
    assert seen == ["a", "b"]
    calls = tool_calls(node_records(rt, s), "tool.remember")
    assert [c["outcome"] for c in calls] == ["ok", "ok"]
    assert all(c["decision"] == "permit" and "permit-tools" in c["rule_ids"] for c in calls)


def test_a_denied_driver_tool_never_runs_on_the_driver(
        make_ray_runtime: Make, tmp_path: Path) -> None:
    ran: list[int] = []
    policy = write_policy(tmp_path, isolation={"backend": "process"},
                          rules=[{"id": "deny-secret", "effect": "forbid",
                                  "function": "tool.secret"}])
    rt = make_ray_runtime(policy)
    with rt.session(tools={"secret": lambda: ran.append(1)}) as s:
        result = s.exec("try:\n    secret()\nexcept Exception as e:\n"
                        "    print(type(e).__name__)")
    assert result.stdout == "PolicyDenied\n"
    assert ran == []
    assert [c["outcome"] for c in tool_calls(node_records(rt, s), "tool.secret")] == ["denied"]


def test_a_driver_tool_that_raises_is_the_calls_error_recorded_on_the_node(
        make_ray_runtime: Make) -> None:
    def broken() -> None:
        raise KeyError("/home/driver/secret-path")

    rt = make_ray_runtime()
    with rt.session(tools={"broken": broken}) as s:
        result = s.exec("try:\n    broken()\nexcept Exception as e:\n"
                        "    print(type(e).__name__, e)")
        assert s.exec("print('still here')").stdout == "still here\n"
    # as embedded: the tool's type crosses, never its message (it may hold host paths)
    assert result.stdout == "HostCallError tool.broken failed: KeyError\n"
    call, = tool_calls(node_records(rt, s), "tool.broken")
    assert call["outcome"] == "error"
    assert call["error"].startswith("KeyError")


def test_a_driver_tool_returning_a_non_json_value_fails_that_call_only(
        make_ray_runtime: Make) -> None:
    def odd() -> object:
        return object()

    rt = make_ray_runtime()
    with rt.session(tools={"odd": odd}) as s:
        result = s.exec("try:\n    odd()\nexcept Exception as e:\n"
                        "    print(type(e).__name__, 'cannot cross' in str(e))")
        assert s.exec("print(1)").stdout == "1\n"
    assert result.stdout == "HostCallError True\n"
    assert s.state is RemoteSessionState.CLOSED
    call, = tool_calls(node_records(rt, s), "tool.odd")
    assert call["outcome"] == "error"


def test_a_driver_tool_that_never_answers_is_abandoned_at_the_tool_timeout(
        make_ray_runtime: Make, tmp_path: Path) -> None:
    """The node waits for the driver no longer than ``tool_timeout_s``: the call is
    abandoned (recorded on the node), the cell goes on and ends on time."""
    release = threading.Event()
    policy = write_policy(tmp_path, isolation={"backend": "process"},
                          limits={"tool_timeout_s": 1.5, "cell_timeout_s": 20.0})
    rt = make_ray_runtime(policy)
    try:
        with rt.session(tools={"hang": lambda: release.wait(60)}) as s:
            started = time.monotonic()
            result = s.exec("try:\n    hang()\nexcept Exception as e:\n"
                            "    print(type(e).__name__)\nprint('after')")
            took = time.monotonic() - started
    finally:
        release.set()
    assert result.stdout == "TimeoutError\nafter\n", result
    assert 1.4 < took < 10
    call, = tool_calls(node_records(rt, s), "tool.hang")
    assert call["outcome"] == "abandoned"
    assert call["limit"] == "tool_timeout_s"


def test_a_hung_driver_tool_frees_its_node_thread_when_its_session_closes(
        make_ray_runtime: Make, tmp_path: Path) -> None:
    """An abandoned call waits for the driver past the cell's end, but never past its
    session: closing it releases the wait, and the node records the call's late end as
    an error (the driver never answered), not as a success."""
    release = threading.Event()
    policy = write_policy(tmp_path, isolation={"backend": "process"},
                          limits={"tool_timeout_s": 1.0, "cell_timeout_s": 20.0})
    rt = make_ray_runtime(policy)
    try:
        with rt.session(tools={"hang": lambda: release.wait(60)}) as s:
            result = s.exec("try:\n    hang()\nexcept Exception as e:\n"
                            "    print(type(e).__name__)")
            assert result.stdout == "TimeoutError\n", result
            assert not [r for r in node_records(rt, s) if r["event"] == "host.call.late"]
        deadline = time.monotonic() + 10
        while not (late := [r for r in node_records(rt, s) if r["event"] == "host.call.late"]) \
                and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        release.set()
    assert len(late) == 1, "the closed session's waiting call was never released"
    assert (late[0]["function"], late[0]["outcome"], late[0]["error"]) == (
        "tool.hang", "error", "DriverUnreachable"), late[0]


class CountingConversationLM:
    """A driver-side provider taking whole requests, counting input before a call."""

    name = "counting"
    model = "counting-model"

    def __init__(self) -> None:
        self.requests: list[LMRequest] = []
        self.counted: list[LMRequest] = []

    def complete(self, prompt: str, *, model: str | None = None) -> Completion:
        raise AssertionError("a whole-request provider must get the whole request")

    def respond(self, request: LMRequest, *, model: str | None = None,
                on_text: TextSink | None = None) -> Completion:
        self.requests.append(request)
        return Completion(text="ok", model=model or self.model, input_tokens=7,
                          output_tokens=3)

    def count_input_tokens(self, request: LMRequest, *,
                           model: str | None = None) -> int | None:
        self.counted.append(request)
        return 7


def test_a_driver_lm_provider_gets_the_whole_request_and_counts_it(
        make_ray_runtime: Make, tmp_path: Path) -> None:
    """The system prompt and the parameters the node decided reach the driver's provider
    as a request (not flattened into the text); when the byte bound of the input does not
    fit the tree's input budget, the driver's provider counts it before the call, and the
    usage it reports is what the node's ledger charges."""
    lm = CountingConversationLM()
    policy = write_policy(tmp_path, isolation={"backend": "process"},
                          budgets={"tree": {"calls": 50, "input_tokens": 200,
                                            "output_tokens": 1000, "cost_usd": 1.0,
                                            "max_depth": 1, "max_concurrent": 4,
                                            "max_prompt_chars": 10_000}})
    rt = make_ray_runtime(policy, lm=lm)
    with rt.session() as s:
        result = s.exec("print(llm_query('q' * 300, system='be brief', temperature=0.5, "
                        "stop=['END']))")
    assert result.stdout == "ok\n", result
    request, = lm.requests
    assert (request.system, request.turns[-1].text) == ("be brief", "q" * 300)
    assert (request.options.temperature, request.options.stop) == (0.5, ("END",))
    assert [r.turns for r in lm.counted] == [request.turns]   # 300+ bytes > 200: counted
    call, = tool_calls(node_records(rt, s), "llm_query")
    assert (call["tokens_in"], call["tokens_out"]) == (7, 3)
    assert call["budget_after"]["tree"]["input_tokens"] == 7


def test_a_cell_waiting_on_a_driver_tool_ends_at_its_wall_time(
        make_ray_runtime: Make, tmp_path: Path) -> None:
    """A driver that never answers cannot hold the cell past its wall time."""
    release = threading.Event()
    policy = write_policy(tmp_path, isolation={"backend": "process"},
                          limits={"tool_timeout_s": 60.0, "cell_timeout_s": 2.0,
                                  "interrupt_grace_s": 5.0})
    rt = make_ray_runtime(policy)
    try:
        with rt.session(tools={"hang": lambda: release.wait(60)}) as s:
            started = time.monotonic()
            result = s.exec("hang()")
            took = time.monotonic() - started
            assert s.exec("print('next')").stdout == "next\n"
    finally:
        release.set()
    assert result.status == "interrupted", result
    assert took < 12
    records = node_records(rt, s)
    assert [c["outcome"] for c in tool_calls(records, "tool.hang")] == ["abandoned"]
    assert any(r["event"] == "limit.exceeded" and r.get("limit") == "cell_timeout_s"
               for r in records)


def test_output_streams_to_the_driver_as_the_cell_runs(make_ray_runtime: Make) -> None:
    rt = make_ray_runtime()
    pieces: list[tuple[str, str, float]] = []
    with rt.session() as s:
        started = time.monotonic()
        result = s.exec("import sys, time\nprint('first', flush=True)\ntime.sleep(3)\n"
                        "print('oops', file=sys.stderr)",
                        on_output=lambda stream, text: pieces.append(
                            (stream, text, time.monotonic() - started)))
        ended = time.monotonic() - started
    assert "".join(t for stream, t, _ in pieces if stream == "stdout") == result.stdout \
        == "first\n"
    assert "".join(t for stream, t, _ in pieces if stream == "stderr") == result.stderr
    # the first line came while the cell slept, not with its result
    assert ended - pieces[0][2] > 1.5, (pieces, ended)


def test_an_output_callback_that_raises_does_not_end_the_cell(make_ray_runtime: Make) -> None:
    calls: list[str] = []

    def broken(stream: str, text: str) -> None:
        calls.append(text)
        raise RuntimeError("caller bug")

    rt = make_ray_runtime()
    with rt.session() as s:
        result = s.exec("import time\nprint('a', flush=True)\ntime.sleep(0.3)\nprint('b')",
                        on_output=broken)
    assert result.status == "ok"
    assert result.stdout == "a\nb\n"
    assert len(calls) == 1   # never called again once it raised
    assert calls[0].startswith("a\n")


def test_tools_added_to_a_running_session_run_on_the_driver(make_ray_runtime: Make) -> None:
    rt = make_ray_runtime()
    with rt.session() as s:
        s.exec("x = 1")
        s.add_tools({"double": lambda n: 2 * n})
        assert s.exec("print(double(21))").stdout == "42\n"
    assert any(r["event"] == "session.functions_added" and r["functions"] == ["tool.double"]
               for r in node_records(rt, s))


def test_an_lm_provider_object_stays_on_the_driver(make_ray_runtime: Make) -> None:
    """``lm=`` given as a provider object: completions are made here, metered there."""
    lm = ScriptedLM(default="from the driver")
    rt = make_ray_runtime(lm=lm)
    with rt.session() as s:
        result = s.exec("print(llm_query('q'))\nprint(llm_query_batched(['a', 'b']))")
    assert result.stdout == "from the driver\n['from the driver', 'from the driver']\n"
    assert len(lm.prompts) == 3
    outcomes = [r["outcome"] for r in node_records(rt, s)
                if r["event"] == "host.call" and r.get("function", "").startswith("llm_query")]
    assert outcomes.count("ok") == 3


class _CallableProvider(ScriptedLM):
    """A provider that is also callable, as many SDK clients are: it holds a key and must
    never be pickled to a node (it refuses to be)."""

    def __call__(self, prompt: str) -> str:
        return self.complete(prompt).text

    def __reduce__(self) -> Any:
        raise TypeError("this provider holds a key and must not leave the driver")


def test_a_callable_lm_provider_object_is_not_taken_for_a_factory(
        make_ray_runtime: Make) -> None:
    """Being callable does not make a provider a factory: it stays on the driver, as any
    provider object does, rather than travelling to every node with its key."""
    lm = _CallableProvider(default="kept here")
    rt = make_ray_runtime(lm=lm)
    with rt.session() as s:
        result = s.exec("print(llm_query('q'))")
    assert result.stdout == "kept here\n"
    assert lm.prompts == ["q"]


def test_files_cross_to_and_from_a_remote_session(make_ray_runtime: Make) -> None:
    rt = make_ray_runtime()
    with rt.session() as s:
        s.write_file("/tmp/in.txt", "hello")
        s.exec("import pathlib\npathlib.Path('/tmp/out.txt').write_text("
               "pathlib.Path('/tmp/in.txt').read_text().upper())")
        assert s.read_file("/tmp/out.txt") == b"HELLO"
        assert {"in.txt", "out.txt"} <= {e["name"] for e in s.list_files("/tmp")}


def test_a_killed_sandbox_makes_the_remote_session_dead(make_ray_runtime: Make,
                                                       tmp_path: Path) -> None:
    policy = write_policy(tmp_path, isolation={"backend": "process"},
                          limits={"cell_timeout_s": 1.0, "interrupt_grace_s": 0.5})
    rt = make_ray_runtime(policy)
    with rt.session() as s:
        result = s.exec("import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                        "time.sleep(30)")
        assert result.status == "killed"
        assert s.state is RemoteSessionState.DEAD
        with pytest.raises(SessionKilled):
            s.exec("1")


def test_a_frontends_subcall_runs_on_the_driver_after_the_node_admits_it(
        make_ray_runtime: Make, tmp_path: Path) -> None:
    """``RayRuntime(subcall=...)`` as ``Runtime(subcall=...)``: ``rlm_query`` is decided
    and budgeted on the node, then the frontend's own recursive call runs here."""
    prompts: list[str] = []

    def subcall(prompt: str, model: str | None) -> str:
        prompts.append(prompt)
        return f"child says {prompt}"

    policy = write_policy(tmp_path, isolation={"backend": "process"},
                          budgets={"tree": {"calls": 1}})
    rt = make_ray_runtime(policy, subcall=subcall)
    with rt.session() as s:
        first = s.exec("print(rlm_query('hi'))")
        second = s.exec("print(rlm_query('again'))")
    assert first.stdout == "child says hi\n"
    assert "BudgetExceeded" in second.stdout + (second.error or "")
    assert prompts == ["hi"]
    outcomes = [r["outcome"] for r in node_records(rt, s)
                if r["event"] == "host.call" and r.get("function") == "rlm_query"]
    assert outcomes == ["ok", "budget_exceeded"]
