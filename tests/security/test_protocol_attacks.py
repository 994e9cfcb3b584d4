"""Protocol attacks: model code writes its own frames to the agent's protocol descriptor.

The agent runs in the same process as model code, so model code can forge any frame. The
host must treat each as hostile: a forged call is decided like any other; stray results,
outputs and ready frames cannot end or change the cell; a malformed, oversized, truncated,
non-UTF-8 or over-deep frame kills the sandbox (never the host) and is audited; a flood of
calls is cut off.
"""

from __future__ import annotations

import json

import pytest

from rlmbox.errors import SessionKilled
from rlmbox.lm.scripted import ScriptedLM
from rlmbox.runtime.results import ExecResult
from rlmbox.runtime.runtime import Runtime
from rlmbox.runtime.session import MAX_CALLS_PER_CELL, Session

from .harness import Runtimes, assert_chain_valid, events, exec_bounded, watched_session

# Gives model code ``raw(bytes)`` and ``forge(dict)`` on the agent's own protocol stream.
FORGE = """
import json, struct, sys
_agent = [c.cell_contents for c in llm_query.__closure__
          if type(c.cell_contents).__name__ == 'Agent'][0]
_fd = _agent.io._write_fd
def raw(data):
    import os
    while data:
        data = data[os.write(_fd, data):]
def forge(obj):
    body = json.dumps(obj).encode()
    raw(struct.pack('>I', len(body)) + body)
"""


def _forged(session: Session, code: str, timeout: float | None = None) -> ExecResult:
    return session.exec(FORGE + code, timeout=timeout)


def test_forged_call_to_unknown_function_is_denied_and_audited(runtimes: Runtimes) -> None:
    """A hand-made call frame naming a function that does not exist is refused and
    recorded; the cell and the session carry on."""
    rt = runtimes()
    with watched_session(rt) as (session, _):
        result = _forged(session, "forge({'t': 'call', 'call': 777, 'fn': 'os.system',"
                                  " 'args': ['id'], 'kwargs': {}})\nprint('after')")
        assert result.status == "ok"
        assert result.stdout == "after\n"
        assert session.exec("print(llm_query('q'))").stdout == "lm-answer\n"
    denied = events(rt, "host.call", function="os.system", outcome="denied")
    assert denied
    assert denied[0]["reason"] == "no such host function"


def test_forged_call_to_unpermitted_tool_is_denied(runtimes: Runtimes) -> None:
    """A forged call to a registered tool that the policy does not permit never runs it."""
    ran: list[object] = []

    def wipe(target: str) -> str:
        ran.append(target)
        return "wiped"

    rt = runtimes()
    with watched_session(rt, tools={"wipe": wipe}) as (session, _):
        result = _forged(session, "forge({'t': 'call', 'call': 5, 'fn': 'tool.wipe',"
                                  " 'args': ['/'], 'kwargs': {}})\n"
                                  "try:\n    wipe('/')\nexcept PolicyDenied:\n"
                                  "    print('denied')\n")
        assert result.stdout == "denied\n"
    assert not ran
    assert len(events(rt, "host.call", function="tool.wipe", outcome="denied")) == 2


@pytest.mark.parametrize(("args", "kwargs"), [
    ([12345], {}), ([["a", "list"]], {}), (["a", "b", "c"], {}), ([], {"bogus": 1}),
    (["p"], {"prompt": "twice"}), ([], {}),
])
def test_calls_with_wrong_arguments_are_refused(runtimes: Runtimes, args: list[object],
                                                kwargs: dict[str, object]) -> None:
    """Wrong types, too many, unknown, duplicated or missing arguments: a TypeError inside,
    no LM call on the host."""
    lm = ScriptedLM(default="never")
    rt = runtimes(lm=lm)
    with watched_session(rt) as (session, _):
        result = session.exec(
            f"try:\n    llm_query(*{args!r}, **{kwargs!r})\n"
            "except TypeError as e:\n    print('TypeError')\n"
            "except Exception as e:\n    print(type(e).__name__)\n")
        assert result.stdout == "TypeError\n"
    assert lm.prompts == []


def test_forged_ready_and_stray_results_do_not_end_the_cell(runtimes: Runtimes) -> None:
    """A forged ready frame, a result for another cell and output for another cell are
    ignored: the cell's own output and result stand."""
    with watched_session(runtimes()) as (session, _):
        result = _forged(session,
                         "forge({'t': 'ready', 'version': '1', 'pid': 1})\n"
                         "forge({'t': 'result', 'id': 'not-this-cell', 'status': 'ok',"
                         " 'answer': 'forged', 'has_answer': True})\n"
                         "forge({'t': 'output', 'id': 'not-this-cell', 'stream': 'stdout',"
                         " 'data': 'injected'})\n"
                         "print('real output')\nFINAL('real answer')\n")
        assert result.status == "ok"
        assert result.stdout == "real output\n"
        assert result.answer == "real answer"


def test_forged_result_for_own_cell_gains_no_time(runtimes: Runtimes) -> None:
    """Model code that learns its own cell id can end its cell early with a forged result
    (the agent is not a boundary), but the code that keeps running gains nothing: forged
    dropped-byte counts are sanitised, the next cell is still held to its wall time, and
    session end kills everything."""
    rt = runtimes()
    with watched_session(rt) as (session, _):
        result = _forged(session,
                         "cid = sys._getframe(1).f_locals['cell_id']\n"
                         "forge({'t': 'result', 'id': cid, 'status': 'ok', 'answer': 'early',"
                         " 'has_answer': True, 'dropped': {'stdout': -9, 'stderr': True}})\n"
                         "import signal, time\n"
                         "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                         "while True:\n    time.sleep(0.01)\n")
        assert result.status == "ok"
        assert result.answer == "early"
        assert result.dropped == {"stdout": 0, "stderr": 0, "error": 0, "answer": 0}
        follow = session.exec("print('never runs')")
        assert follow.status == "killed"
        with pytest.raises(SessionKilled):
            session.exec("print(1)")


def test_output_frames_are_capped_on_the_host(runtimes: Runtimes) -> None:
    """Output frames written directly (bypassing the agent's own cap) are capped by the
    host at the policy's limit."""
    rt = runtimes()
    cap = rt.policy.limits.output_bytes
    with watched_session(rt) as (session, _):
        result = _forged(session,
                         "cid = sys._getframe(1).f_locals['cell_id']\n"
                         "for _ in range(200):\n"
                         "    forge({'t': 'output', 'id': cid, 'stream': 'stdout',"
                         " 'data': 'F' * 100000})\n")
        assert result.status == "ok"
        assert result.truncated
        assert len(result.stdout.encode()) <= cap + 200
        assert result.dropped["stdout"] >= 200 * 100000 - cap


# (name, code that breaks the stream). Each must kill the sandbox, never the host.
BROKEN_STREAMS = {
    "oversized-length": "raw(struct.pack('>I', 0x7FFFFFFF) + b'{')\n",
    "over-cap-length": "raw(struct.pack('>I', 8 * 1024 * 1024 + 1) + b'{' * 100)\n",
    "invalid-utf8": "raw(struct.pack('>I', 4) + b'\\xff\\xfe\\xfd\\xfc')\n",
    "not-json": "raw(struct.pack('>I', 5) + b'hello')\n",
    "json-array": "raw(struct.pack('>I', 2) + b'[]')\n",
    "json-string": "raw(struct.pack('>I', 3) + b'\"x\"')\n",
    "deep-nesting-100k": ("b = b'[' * 100000 + b']' * 100000\n"
                          "raw(struct.pack('>I', len(b)) + b)\n"),
    "deep-nesting-65": ("forge({'t': 'call', 'call': 1, 'fn': 'llm_query', 'args':"
                        " [eval('[' * 70 + ']' * 70)], 'kwargs': {}})\n"),
    "unknown-type": "forge({'t': 'pwn'})\n",
    "host-only-type": "forge({'t': 'exec', 'id': 'x', 'code': 'print(1)'})\n",
    "unknown-field": ("forge({'t': 'call', 'call': 1, 'fn': 'llm_query', 'args': [],"
                      " 'kwargs': {}, 'sudo': True})\n"),
    "bool-as-int": ("forge({'t': 'call', 'call': True, 'fn': 'llm_query', 'args': ['x'],"
                    " 'kwargs': {}})\n"),
    "nan-constant": ("body = b'{\"t\":\"call\",\"call\":NaN,\"fn\":\"x\",\"args\":[],"
                     "\"kwargs\":{}}'\nraw(struct.pack('>I', len(body)) + body)\n"),
    "truncated-then-exit": ("import os\nraw(struct.pack('>I', 100) + b'{\"t\":')\n"
                            "os._exit(0)\n"),
}


@pytest.mark.parametrize("name", sorted(BROKEN_STREAMS))
def test_broken_stream_kills_only_the_sandbox(runtimes: Runtimes, name: str) -> None:
    """Malformed, oversized, truncated, non-UTF-8, over-deep or wrongly typed frames end
    the session as killed with the reason recorded; the host and its audit log are fine."""
    rt = runtimes()
    with watched_session(rt) as (session, _):
        result = _forged(session, BROKEN_STREAMS[name] + "import time\ntime.sleep(30)\n")
        assert result.status == "killed"
        assert session.state.value == "dead"
        with pytest.raises(SessionKilled):
            session.exec("print(1)")
    killed = events(rt, "sandbox.killed") + events(rt, "limit.exceeded")
    assert killed, "the kill is not in the audit log"
    _fresh_session_works(rt)
    rt.close()
    assert_chain_valid(rt)


def _fresh_session_works(rt: Runtime) -> None:
    with watched_session(rt) as (session, _):
        assert session.exec("print('fine')").stdout == "fine\n"


@pytest.mark.slow
def test_slow_partial_frame_does_not_hang_the_host(runtimes: Runtimes) -> None:
    """Half a frame and then silence: the host waits only the cell's wall time plus the
    grace period, then kills the sandbox."""
    rt = runtimes()
    with watched_session(rt) as (session, _):
        result = _forged(session, "raw(struct.pack('>I', 1000) + b'{\"t\": \"out')\n"
                                  "import time\ntime.sleep(3600)\n")
        assert result.status == "killed"
    assert events(rt, "limit.exceeded", limit="cell_timeout_s")


# Drains the agent's read side in a thread, so replies to forged calls never back up.
DRAIN = """
import os, threading
def _drain():
    while os.read(_agent.io._read_fd, 1 << 16):
        pass
threading.Thread(target=_drain, daemon=True).start()
"""


@pytest.mark.slow
def test_call_flood_is_cut_off(runtimes: Runtimes) -> None:
    """More forged calls in one cell than the host admits kills the sandbox; every
    refused call before that is audited and the chain still verifies. The cell gets 60 s:
    10,050 audited refusals take seconds on a loaded gVisor host, and the cap, not the
    wall time, must be what ends it."""
    rt = runtimes(limits={"cell_timeout_s": 60})
    with watched_session(rt) as (session, _):
        result = exec_bounded(
            session, FORGE + DRAIN +
            "frame = {'t': 'call', 'call': 1, 'fn': 'nope', 'args': [], 'kwargs': {}}\n"
            "body = json.dumps(frame).encode()\n"
            "one = struct.pack('>I', len(body)) + body\n"
            f"raw(one * {MAX_CALLS_PER_CELL + 50})\n"
            "import time\ntime.sleep(30)\n", bound_s=120, timeout=60)
        assert result.status == "killed"
        assert "host calls" in (result.error or "")
    assert len(events(rt, "host.call", function="nope")) == MAX_CALLS_PER_CELL
    rt.close()
    assert_chain_valid(rt)


@pytest.mark.slow
def test_sandbox_that_stops_reading_cannot_hang_the_host(runtimes: Runtimes) -> None:
    """A forged call whose reply the sandbox never reads ends the cell at its wall time
    (killed), instead of blocking the host's exec forever."""
    # a reply larger than any pipe or container attach-stream buffer (under the frame cap)
    rt = runtimes(lm=ScriptedLM(default="y" * 6_000_000))
    limits = rt.policy.limits
    with watched_session(rt) as (session, _):
        result = exec_bounded(
            session, FORGE + "forge({'t': 'call', 'call': 1, 'fn': 'llm_query',"
                             " 'args': ['x'], 'kwargs': {}})\n"
                             "import time\ntime.sleep(3600)\n",
            bound_s=limits.cell_timeout_s + limits.interrupt_grace_s + 5)
        assert result.status == "killed"


def test_oversized_call_arguments_are_refused_inside(runtimes: Runtimes) -> None:
    """Arguments over the frame cap are refused by the agent before sending; a prompt
    over the policy's prompt size is refused by the host's budget."""
    lm = ScriptedLM(default="never")
    rt = runtimes(lm=lm)
    with watched_session(rt) as (session, _):
        result = session.exec(
            "out = []\n"
            "for size in (9 * 1024 * 1024, 20000):\n"
            "    try:\n        llm_query('x' * size)\n        out.append('sent')\n"
            "    except Exception as e:\n        out.append(type(e).__name__)\n"
            "print(json.dumps(out))\n".replace("print(json", "import json\nprint(json"))
        assert result.status == "ok", result.error
        assert json.loads(result.stdout) == ["TypeError", "BudgetExceeded"]
    assert lm.prompts == []


def test_answer_over_the_frame_cap_is_an_error_not_a_dead_session(runtimes: Runtimes) -> None:
    """A FINAL answer larger than a frame ends the cell with an error; the session lives."""
    with watched_session(runtimes()) as (session, _):
        result = session.exec("FINAL('x' * (9 * 1024 * 1024))")
        assert result.status == "error"
        assert session.exec("print(1)").stdout == "1\n"


# JSON the decoder accepts but the host cannot record: a float literal that overflows to
# infinity, and a lone UTF-16 surrogate escape in a string.
UNRECORDABLE = {
    "inf-in-call-args": ("body = b'{\"t\":\"call\",\"call\":5,\"fn\":\"llm_query\","
                         "\"args\":[1e999],\"kwargs\":{}}'\n"),
    "surrogate-in-function-name": ("body = b'{\"t\":\"call\",\"call\":5,\"fn\":\"x\\\\ud800\","
                                   "\"args\":[],\"kwargs\":{}}'\n"),
    "surrogate-in-result-error": (
        "cid = sys._getframe(1).f_locals['cell_id']\n"
        "body = ('{\"t\":\"result\",\"id\":\"%s\",\"status\":\"error\","
        "\"error\":\"\\\\udfff\"}' % cid).encode()\n"),
}


@pytest.mark.parametrize("name", sorted(UNRECORDABLE))
def test_unrecordable_json_is_a_protocol_violation(runtimes: Runtimes, name: str) -> None:
    """Frames holding values the audit log cannot record (infinity, lone surrogates) are
    refused at the decoder: the sandbox is killed and the violation is audited."""
    rt = runtimes()
    with watched_session(rt) as (session, _):
        result = _forged(session, UNRECORDABLE[name] +
                         "raw(struct.pack('>I', len(body)) + body)\n"
                         "import time\ntime.sleep(30)\n")
        assert result.status == "killed"
        assert "protocol" in (result.error or "")
    assert events(rt, "sandbox.killed")
