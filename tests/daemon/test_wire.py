"""Error types survive the wire: the status the server picks and the class the client
raises are two halves of one table."""

from __future__ import annotations

import dataclasses
import json

import pytest

from rlmbox import errors
from rlmbox.daemon.wire import (
    ENGINE_STATUS,
    exception_for,
    result_from_json,
    result_json,
    status_for,
)
from rlmbox.runtime.results import ExecResult


@pytest.mark.parametrize("name", sorted(ENGINE_STATUS))
def test_every_engine_error_comes_back_as_its_own_class(name: str) -> None:
    cls = getattr(errors, name)
    status, kind = status_for(cls("boom"))
    assert kind == name
    assert 400 <= status < 600
    again = exception_for(status, kind, "boom")
    assert type(again) is cls
    assert str(again) == "boom"


def test_unknown_and_foreign_types_become_daemon_errors() -> None:
    for kind in ("NotFound", "Unauthorized", "RlmboxError", "ValueError", "DaemonError", ""):
        error = exception_for(418, kind, "nope")
        assert type(error) is errors.DaemonError
        assert error.status == 418
        assert error.type == kind


def test_daemon_errors_keep_their_status_and_type() -> None:
    assert status_for(errors.DaemonError("x", status=404, type="NotFound")) == (404,
                                                                               "NotFound")
    assert status_for(errors.DaemonError("x")) == (400, "InvalidRequest")


def test_a_result_on_the_wire_is_its_fields_and_comes_back_equal() -> None:
    """``result_json`` copies shallowly; its JSON is the deep copy's, and it round-trips."""
    result = ExecResult(status="error", stdout="o", stderr="e", error="boom",
                        answer={"nested": [1, {"a": (2, 3)}]}, has_answer=True,
                        duration_s=0.5, host_calls=2, truncated=True, dropped={"stdout": 3},
                        cell_id="c-1")
    body = result_json(result)
    assert json.dumps(body) == json.dumps({**dataclasses.asdict(result), "ok": False})
    assert result_from_json(json.loads(json.dumps(body))) == dataclasses.replace(
        result, answer={"nested": [1, {"a": [2, 3]}]})
