"""A cell's answer travels in its result frame as JSON when it can, as its repr when it
is not JSON, and as an error naming the cap when it is too large; the session goes on."""

from __future__ import annotations

from rlmbox.runtime.runtime import Runtime


def test_a_json_answer_comes_back_unchanged(runtime: Runtime) -> None:
    with runtime.session() as s:
        r = s.exec("FINAL({'k': [1, 2.5, None, True], 'text': 'h\\u00e9 \\u2603'})")
    assert r.answer == {"k": [1, 2.5, None, True], "text": "hé ☃"}


def test_an_answer_holding_a_non_json_value_comes_back_as_its_repr(runtime: Runtime) -> None:
    with runtime.session() as s:
        r = s.exec("FINAL({'when': b'raw'})")
    assert r.answer == "{'when': b'raw'}"


def test_an_answer_over_the_frame_cap_is_an_error_and_the_session_goes_on(
        runtime: Runtime) -> None:
    with runtime.session() as s:
        r = s.exec("FINAL('x' * (9 * 1024 * 1024))")
        after = s.exec("FINAL(7)")
    assert r.status == "error"
    assert "the answer cannot be returned" in (r.error or "")
    assert after.answer == 7


def test_an_answer_nested_deeper_than_the_protocol_allows_comes_back_as_its_repr(
        runtime: Runtime) -> None:
    """The host refuses a frame nested over 64 levels: the agent must not send one (it
    broke the session with a protocol error)."""
    with runtime.session() as s:
        r = s.exec("v = 1\nfor _ in range(70):\n    v = [v]\nFINAL(v)")
        after = s.exec("FINAL(7)")
    assert r.status == "ok"
    assert r.answer == "[" * 70 + "1" + "]" * 70
    assert after.answer == 7
