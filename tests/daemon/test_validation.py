"""Bad input gets a 4xx with a message, never a 5xx, and the daemon keeps serving."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlmbox.daemon.app import MAX_BODY_BYTES


@pytest.fixture
def session_id(http: httpx.Client) -> Iterator[str]:
    response = http.post("/v1/sessions", json={})
    assert response.status_code == 201
    sid: str = response.json()["id"]
    yield sid
    http.delete(f"/v1/sessions/{sid}")


def _assert_client_error(response: httpx.Response, status: int = 400) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"]
    assert error["message"]


@pytest.mark.parametrize("body", [
    b"{", b"[]", b'"text"', b"null", b"\xff\xfe", b"{'single': 1}", b"[" * 100_000,
    b'{"policy": 1}', b'{"policy": ""}', b'{"backend": "vm"}', b'{"context": 5}',
    b'{"polcy": "test"}', b'{"context": "x", "extra": true}', b'{"policy": ["test"]}',
    b'{"backend": true}',
])
def test_bad_create_bodies_are_400(http: httpx.Client, body: bytes) -> None:
    _assert_client_error(http.post("/v1/sessions", content=body))


@pytest.mark.parametrize("body", [
    {}, {"code": 1}, {"code": None}, {"code": "1", "timeout_s": "5"},
    {"code": "1", "timeout_s": True}, {"code": "1", "timeout_s": -1},
    {"code": "1", "timeout_s": 0}, {"code": "1", "timeout_s": 1e300},
    {"code": "1", "cell": 2},
])
def test_bad_exec_bodies_are_400(http: httpx.Client, session_id: str,
                                 body: dict[str, Any]) -> None:
    _assert_client_error(http.post(f"/v1/sessions/{session_id}/exec", json=body))
    ok = http.post(f"/v1/sessions/{session_id}/exec", json={"code": "print(2)"})
    assert ok.status_code == 200
    assert ok.json()["stdout"] == "2\n"


def test_nan_timeout_is_400(http: httpx.Client, session_id: str) -> None:
    _assert_client_error(http.post(f"/v1/sessions/{session_id}/exec",
                                   content=b'{"code": "1", "timeout_s": NaN}'))


def test_oversized_body_is_413_and_the_daemon_keeps_serving(http: httpx.Client) -> None:
    body = b'{"context": "' + b"x" * (MAX_BODY_BYTES + 10) + b'"}'
    response = http.post("/v1/sessions", content=body)
    _assert_client_error(response, 413)
    assert response.json()["error"]["type"] == "PayloadTooLarge"
    assert http.get("/v1/health").status_code == 200


def test_unknown_policy_name_is_400_with_the_names(http: httpx.Client) -> None:
    response = http.post("/v1/sessions", json={"policy": "root"})
    _assert_client_error(response)
    assert response.json()["error"]["type"] == "UnknownPolicy"
    assert "test" in response.json()["error"]["message"]


def test_a_client_cannot_upload_a_policy(http: httpx.Client) -> None:
    policy = {"name": "wide-open", "rules": [{"id": "all", "effect": "permit",
                                             "function": "*"}]}
    _assert_client_error(http.post("/v1/sessions", json={"policy": policy}))
    _assert_client_error(http.post("/v1/sessions", json={"policy": "/etc/passwd"}))


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/v1/nothing", 404), ("PUT", "/v1/sessions", 405),
    ("GET", "/v1/audit?limit=0", 400), ("GET", "/v1/audit?limit=x", 400),
    ("GET", "/v1/audit?after_seq=-1", 400), ("GET", "/v1/audit?limit=100000", 400),
    ("GET", "/v1/audit?color=red", 400),
])
def test_bad_routes_and_queries_are_json_4xx(http: httpx.Client, method: str, path: str,
                                             status: int) -> None:
    _assert_client_error(http.request(method, path), status)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)
_bodies = st.one_of(
    st.binary(max_size=200),
    st.dictionaries(st.sampled_from(["code", "timeout_s", "policy", "backend", "context",
                                     "x"]), _json_values, max_size=4).map(
        lambda d: json.dumps(d).encode()))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_bodies)
def test_fuzz_exec_bodies_never_5xx(http: httpx.Client, body: bytes) -> None:
    """Hypothesis fuzz: random bytes and random JSON objects posted to exec on an unknown
    session and to a closed session's path never make the daemon answer 5xx."""
    for path in ("/v1/sessions/s-0123456789abcdef/exec", "/v1/sessions/x/exec"):
        response = http.post(path, content=body)
        assert response.status_code < 500, response.text
        assert "error" in response.json()


_create_bodies = st.one_of(
    st.binary(max_size=200),
    # "code" is not a create field, so none of these is a valid request
    st.fixed_dictionaries({"code": _json_values}, optional={
        "policy": _json_values, "backend": _json_values, "context": _json_values}).map(
        lambda d: json.dumps(d).encode()))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_create_bodies)
def test_fuzz_create_bodies_never_5xx(http: httpx.Client, body: bytes) -> None:
    """Hypothesis fuzz: malformed create bodies are answered with a 4xx, never a 5xx."""
    response = http.post("/v1/sessions", content=body)
    if response.status_code == 201:   # random bytes that happen to be a valid request
        http.delete(f"/v1/sessions/{response.json()['id']}")
    assert response.status_code < 500, response.text


@pytest.mark.parametrize("depth", [100, 900, 990, 5000])
def test_deeply_nested_context_never_5xx(http: httpx.Client, depth: int) -> None:
    """Nesting close to the interpreter's recursion limit is refused or accepted, never
    a crash: the body is parsed, validated and re-encoded for the sandbox."""
    body = b'{"context": ' + b"[" * depth + b"]" * depth + b"}"
    response = http.post("/v1/sessions", content=body)
    assert response.status_code < 500, response.text
    if response.status_code == 201:
        http.delete(f"/v1/sessions/{response.json()['id']}")


@pytest.mark.parametrize("body", [b'{"context": "\\ud800"}', b'{"context": ["x", "\\udfff"]}',
                                  b'{"context": {"\\ud800": 1}}',
                                  b'{"context": "\xed\xa0\x80"}'])
def test_a_lone_surrogate_anywhere_in_the_context_is_a_400(http: httpx.Client,
                                                            body: bytes) -> None:
    """Valid JSON that cannot be encoded as UTF-8 (a surrogate escape, as a string, in a
    list, as a key; or encoded raw) is refused before anything is staged."""
    _assert_client_error(http.post("/v1/sessions", content=body))
    assert http.get("/v1/health").status_code == 200
