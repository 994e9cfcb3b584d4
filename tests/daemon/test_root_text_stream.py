"""The root model's replies over the daemon's WebSocket, as they stream.

A cell's ``rlm_query`` starts a child RLM whose root model is an Anthropic provider
pointed at the local test double (tests/lm/fake_api.py: 5 characters an event); its
replies reach the client as ``root_text`` messages while the cell runs, and what the
daemon meters and audits is the same as for the same cell without streaming.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rlmbox.audit.reader import iter_records
from rlmbox.lm.anthropic import AnthropicLM
from rlmbox.policies.model import load_policy
from rlmbox.runtime.recursion import CHILD_TASK
from tests.lm.fake_api import FakeLMServer, serve

from .conftest import RunningDaemon, policy_file

CHILD_REPLY = "Having read the context, the answer is plain.\nFINAL(forty-two)"
CELL = "print(rlm_query('what is six times seven?'))"


@pytest.fixture
def api() -> Iterator[FakeLMServer]:
    yield from serve(f"sk-ant-test-{secrets.token_hex(8)}",
                     answer=lambda prompt: CHILD_REPLY if CHILD_TASK in prompt else "?")


def _daemon(start_daemon: Callable[..., RunningDaemon], tmp_path: Path,
            api: FakeLMServer) -> RunningDaemon:
    lm = AnthropicLM("claude-haiku-4-5", api_key=api.key, base_url=api.url)
    return start_daemon(policies={"test": load_policy(policy_file(tmp_path))}, lm=lm)


def _root_calls(daemon: RunningDaemon) -> list[dict[str, Any]]:
    return [r for r in iter_records(daemon.daemon.audit_dir)
            if r.get("event") == "host.call" and r.get("function") == "root_lm"]


def test_a_child_root_models_reply_streams_to_the_websocket(
        start_daemon: Callable[..., RunningDaemon], tmp_path: Path,
        api: FakeLMServer) -> None:
    """The reply arrives in pieces, named by the child session and its depth, before the
    result; the pieces make the whole reply; the records of the streamed completion equal
    those of the same completion run without a stream (plain ``exec``)."""
    daemon = _daemon(start_daemon, tmp_path, api)
    pieces: list[tuple[str, int, str]] = []
    with daemon.client("acme") as client:
        session = client.create_session()["id"]
        streamed = client.exec_stream(session, CELL, on_output=lambda s, t: None,
                                      on_root_text=lambda c, d, t: pieces.append((c, d, t)))
        plain = client.exec(session, CELL)
    assert streamed.status == plain.status == "ok", streamed.error
    assert streamed.stdout == plain.stdout == "forty-two\n"
    assert len(pieces) > 1
    assert "".join(text for _, _, text in pieces) == CHILD_REPLY
    [(child, depth)] = {(c, d) for c, d, _ in pieces}
    assert (child != session, depth) == (True, 1)
    sent = [seen.body for seen in api.seen if seen.path == "/v1/messages"]
    assert [body.get("stream", False) for body in sent] == [True, False]
    first, second = _root_calls(daemon)
    assert first["session"] == child
    metered = ("outcome", "tokens_in", "tokens_out", "model", "args")
    assert {k: first[k] for k in metered} == {k: second[k] for k in metered}
    # the same prefix again: the double's cache turns the first's write into a read
    assert first["cache_write_tokens"] == second["cache_read_tokens"] > 0
    assert first["outcome"] == "ok"
    assert first["tokens_out"] == len(CHILD_REPLY)


def test_without_a_root_text_callback_the_reply_is_not_streamed(
        start_daemon: Callable[..., RunningDaemon], tmp_path: Path,
        api: FakeLMServer) -> None:
    """A client that streams output only: the child's completion is an ordinary request,
    and nothing but output messages reach it."""
    daemon = _daemon(start_daemon, tmp_path, api)
    output: list[str] = []
    with daemon.client("acme") as client:
        session = client.create_session()["id"]
        result = client.exec_stream(session, CELL, on_output=lambda s, t: output.append(t))
    assert result.stdout == "".join(output) == "forty-two\n"
    sent = [seen.body for seen in api.seen if seen.path == "/v1/messages"]
    assert [body.get("stream", False) for body in sent] == [False]
